package io.blockquant.cuda;

import io.blockquant.quant.FpFormat;
import io.blockquant.quant.IntQuantSpec;
import io.blockquant.tensor.Activation;
import io.blockquant.tensor.GramSum;
import io.blockquant.tensor.Tensor;
import io.blockquant.tensor.TensorBackend;
import java.lang.ref.Cleaner;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Supplier;

/**
 * The GPU backend: one instance per CUDA device. cuBLAS for matrix products, cuSOLVER for Cholesky and SVD,
 * cuBLAS float64 for triangular solves (as the CPU backend solves in float64), and the kernels of
 * {@code core/src/main/native/blockquant_cuda.cu} for everything else, with the CPU backend's semantics
 * (same rounding of quantizers, same float/double choices in norms and RoPE angles).
 *
 * <p>Tensors own device memory: {@link Tensor#close()} frees it at once, a {@link #scratch} scope frees what
 * was made inside it when it ends, and a tensor dropped without either is freed after garbage collection.
 * Each thread works on its own stream and library handles (taken from a per-device pool of those threads
 * gave back at the end of a task, {@link #endTask}); the first operation a thread runs on this backend makes
 * this backend's device current on that thread ({@code cudaSetDevice}).
 */
public final class CudaBackend implements TensorBackend {

    private static final Cleaner CLEANER = Cleaner.create();
    private static final ConcurrentHashMap<Integer, CudaBackend> DEVICES = new ConcurrentHashMap<>();
    /** The device each thread's native context is bound to, -1 before the first bind. */
    private static final ThreadLocal<int[]> BOUND = ThreadLocal.withInitial(() -> new int[] {-1});
    /** Open scratch scopes of this thread, innermost last: the tensors made inside each. */
    private static final ThreadLocal<ArrayDeque<List<CudaTensor>>> SCOPES = ThreadLocal.withInitial(ArrayDeque::new);

    private final int device;

    private CudaBackend(int device) {
        this.device = device;
    }

    /** Whether the native library is loaded and at least one GPU is visible; the reason when not. */
    public static String unavailableReason() {
        String err = CudaNative.loadError();
        if (err != null) return err;
        try {
            int n = CudaNative.deviceCount();
            return n > 0 ? null : "no CUDA device is visible";
        } catch (RuntimeException e) {
            return "CUDA runtime: " + e.getMessage();
        }
    }

    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** The backend of device {@code index} (a CUDA ordinal, as Spark's GPU resource address gives it). */
    public static CudaBackend forDevice(int index) {
        String why = unavailableReason();
        if (why != null) throw new IllegalStateException("CUDA backend unavailable: " + why);
        int count = CudaNative.deviceCount();
        if (index < 0 || index >= count) {
            throw new IllegalArgumentException("GPU " + index + " does not exist (" + count + " visible)");
        }
        return DEVICES.computeIfAbsent(index, CudaBackend::new);
    }

    public int device() {
        return device;
    }

    public String deviceName() {
        bound();
        return CudaNative.deviceName(device);
    }

    @Override
    public String name() {
        return "cuda:" + device;
    }

    @Override
    public boolean onDevice() {
        return true;
    }

    /** Waits for this thread's queued GPU work (for timings). */
    @Override
    public void synchronize() {
        bound();
        CudaNative.synchronize();
    }

    /** TF32 tensor cores for float32 matrix products on this thread's handle (off: exact float32). */
    @Override
    public void useTf32(boolean on) {
        bound();
        CudaNative.setTf32(on);
        TF32.get()[0] = on;
    }

    /** Whether this thread's handle uses TF32 (a handle handed to another task is reset to exact float32). */
    private static final ThreadLocal<boolean[]> TF32 = ThreadLocal.withInitial(() -> new boolean[1]);

    @Override
    public <T> T exactFloat32(Supplier<T> work) {
        boolean was = TF32.get()[0];
        if (!was) return work.get();
        useTf32(false);
        try {
            return work.get();
        } finally {
            useTf32(true);
        }
    }

    @Override
    public long freeDeviceMemory() {
        return memoryInfo()[0];
    }

    /** {free, total} bytes of device memory. */
    public long[] memoryInfo() {
        bound();
        return CudaNative.memoryInfo();
    }

    /**
     * At the end of a Spark task: this thread's stream and handles go back to a per-device pool, so an executor
     * keeps one set per GPU task running at once instead of one per thread Spark ever ran a task on.
     */
    @Override
    public void endTask() {
        int[] b = BOUND.get();
        if (b[0] < 0 || !SCOPES.get().isEmpty()) return; // nothing bound, or still inside a scratch scope
        CudaNative.releaseThread();
        TF32.get()[0] = false;
        b[0] = -1;
    }

    private void bound() {
        int[] b = BOUND.get();
        if (b[0] != device) {
            CudaNative.bind(device);
            b[0] = device;
        }
    }

    // ---- tensors ---------------------------------------------------------------------------------

    /** Device memory of one tensor; {@link #run} frees it once (close, scope end or the cleaner). */
    private static final class Memory implements Runnable {
        private final int device;
        private final long stream;
        private volatile long ptr;

        Memory(int device, long ptr, long stream) {
            this.device = device;
            this.ptr = ptr;
            this.stream = stream;
        }

        @Override
        public synchronized void run() {
            long p = ptr;
            ptr = 0;
            if (p != 0) CudaNative.free(device, p, stream);
        }
    }

    static final class CudaTensor implements Tensor {
        private final CudaBackend backend;
        private final long[] shape;
        private final Memory memory;
        private final Cleaner.Cleanable cleanable;

        CudaTensor(CudaBackend backend, long[] shape, Memory memory) {
            this.backend = backend;
            this.shape = shape;
            this.memory = memory;
            this.cleanable = CLEANER.register(this, memory);
        }

        long ptr() {
            long p = memory.ptr;
            if (p == 0) throw new IllegalStateException("tensor " + describe() + " was closed (or its scratch scope ended)");
            return p;
        }

        @Override
        public long[] shape() {
            return shape.clone();
        }

        @Override
        public TensorBackend backend() {
            return backend;
        }

        @Override
        public void close() {
            cleanable.clean();
        }

        @Override
        public String toString() {
            return describe() + "@" + backend.name();
        }
    }

    private CudaTensor alloc(long... shape) {
        bound();
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("negative dimension in " + Arrays.toString(shape));
            n *= d;
        }
        long ptr = allocate(Math.max(n, 1) * Float.BYTES, shape);
        CudaTensor t = new CudaTensor(this, shape.clone(), new Memory(device, ptr, CudaNative.stream()));
        ArrayDeque<List<CudaTensor>> scopes = SCOPES.get();
        if (!scopes.isEmpty()) scopes.peekLast().add(t);
        return t;
    }

    /** What a JVM keeps on its GPUs that it can let go of when an allocation fails (the executor's cached block). */
    private static final List<Runnable> CACHES = new java.util.concurrent.CopyOnWriteArrayList<>();

    /** Registers {@code release}, run before the one retry of a failed allocation. */
    public static void onOutOfMemory(Runnable release) {
        CACHES.add(release);
    }

    /**
     * cudaMallocAsync; when it fails, the caches are let go of, tensors only the garbage collector still knew
     * about are freed, the frees queued on this thread's stream are waited for, and it is tried once more.
     */
    private long allocate(long bytes, long[] shape) {
        try {
            return CudaNative.alloc(bytes);
        } catch (RuntimeException first) {
            CACHES.forEach(Runnable::run);
            System.gc();
            try {
                Thread.sleep(50); // the cleaner thread frees what the collection found
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            CudaNative.synchronize();
            try {
                return CudaNative.alloc(bytes);
            } catch (RuntimeException again) {
                long[] info = CudaNative.memoryInfo();
                throw new IllegalStateException(String.format(java.util.Locale.ROOT,
                        "CUDA out of memory on GPU %d: cannot allocate %.1f MiB for a tensor %s (%.1f of %.1f GiB free after "
                                + "freeing caches): %s", device, bytes / 1048576.0, Arrays.toString(shape),
                        info[0] / 1073741824.0, info[1] / 1073741824.0, again.getMessage()), again);
            }
        }
    }

    private CudaTensor c(Tensor t) {
        if (!(t instanceof CudaTensor ct) || ct.backend != this) {
            throw new IllegalArgumentException("tensor " + t.describe() + " does not belong to " + name());
        }
        return ct;
    }

    private long p(Tensor t) {
        return c(t).ptr();
    }

    private static int rows(Tensor t) {
        return Math.toIntExact(t.size(0));
    }

    private static int cols(Tensor t) {
        return Math.toIntExact(t.size(1));
    }

    private static int lastDim(Tensor t) {
        return Math.toIntExact(t.size(-1));
    }

    // ---- creation and transfer -------------------------------------------------------------------

    @Override
    public Tensor fromFloats(float[] data, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        if (n != data.length) {
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + n + " values, got " + data.length);
        }
        CudaTensor t = alloc(shape);
        if (data.length > 0) CudaNative.upload(t.ptr(), data, 0, data.length);
        return t;
    }

    @Override
    public Tensor zeros(long... shape) {
        CudaTensor t = alloc(shape);
        CudaNative.fillZero(t.ptr(), t.length() * Float.BYTES);
        return t;
    }

    @Override
    public float[] toFloats(Tensor t) {
        bound();
        float[] out = new float[Math.toIntExact(t.length())];
        if (out.length > 0) CudaNative.download(p(t), out, 0, out.length);
        return out;
    }

    @Override
    public void toBytes(Tensor t, long from, java.nio.ByteBuffer dst) {
        bound();
        int n = dst.remaining() / Float.BYTES;
        if (from < 0 || from + n > t.length()) throw new IndexOutOfBoundsException("elements " + from + "+" + n + " of " + t.length());
        if (!dst.isDirect() || java.nio.ByteOrder.nativeOrder() != java.nio.ByteOrder.LITTLE_ENDIAN) {
            throw new IllegalArgumentException("toBytes needs a direct buffer on a little-endian host");
        }
        if (n > 0) CudaNative.downloadBytes(p(t) + from * Float.BYTES, dst, dst.position(), (long) n * Float.BYTES);
        dst.position(dst.position() + n * Float.BYTES);
    }

    @Override
    public Tensor scratch(Supplier<Tensor> work) {
        return inScope(work, true);
    }

    @Override
    public <T> T scratchValue(Supplier<T> work) {
        return inScope(work, false);
    }

    private <T> T inScope(Supplier<T> work, boolean keepResult) {
        ArrayDeque<List<CudaTensor>> scopes = SCOPES.get();
        List<CudaTensor> made = new ArrayList<>();
        scopes.addLast(made);
        T result = null;
        try {
            result = work.get();
            return result;
        } finally {
            scopes.removeLast();
            for (CudaTensor t : made) {
                if (keepResult && t == result) {
                    if (!scopes.isEmpty()) scopes.peekLast().add(t); // now belongs to the enclosing scope
                } else {
                    t.close();
                }
            }
        }
    }

    // ---- layout ----------------------------------------------------------------------------------

    @Override
    public Tensor reshape(Tensor x, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        if (n != x.length()) throw new IllegalArgumentException("cannot reshape " + x.describe() + " to " + Arrays.toString(shape));
        CudaTensor out = alloc(shape);
        CudaNative.copy(out.ptr(), p(x), n * Float.BYTES);
        return out;
    }

    @Override
    public Tensor transpose(Tensor x) {
        CudaTensor out = alloc(x.size(1), x.size(0));
        CudaNative.transpose(p(x), out.ptr(), rows(x), cols(x));
        return out;
    }

    @Override
    public Tensor rows(Tensor x, long from, long to) {
        long width = x.size(1);
        CudaTensor out = alloc(to - from, width);
        CudaNative.copy(out.ptr(), p(x) + from * width * Float.BYTES, (to - from) * width * Float.BYTES);
        return out;
    }

    @Override
    public Tensor columns(Tensor x, long from, long to) {
        long width = x.size(1);
        CudaTensor out = alloc(x.size(0), to - from);
        CudaNative.copy2d(out.ptr(), to - from, p(x) + from * Float.BYTES, width, to - from, x.size(0));
        return out;
    }

    @Override
    public Tensor selectColumns(Tensor x, int[] columns) {
        for (int c : columns) if (c < 0 || c >= x.size(1)) throw new IndexOutOfBoundsException("column " + c + " of " + x.describe());
        CudaTensor out = alloc(x.size(0), columns.length);
        CudaNative.selectColumns(p(x), rows(x), cols(x), columns, out.ptr());
        return out;
    }

    @Override
    public Tensor gatherRows(Tensor table, int[] rows) {
        long height = table.size(0);
        for (int r : rows) {
            if (r < 0 || r >= height) throw new IndexOutOfBoundsException("row " + r + " outside a table of " + height + " rows");
        }
        CudaTensor out = alloc(rows.length, table.size(1));
        CudaNative.gatherRows(p(table), height, cols(table), rows, out.ptr());
        return out;
    }

    @Override
    public Tensor concatColumns(Tensor... parts) {
        long r = parts[0].size(0), total = 0;
        for (Tensor t : parts) {
            if (t.size(0) != r) throw new IllegalArgumentException("concatColumns: row counts differ");
            total += t.size(1);
        }
        CudaTensor out = alloc(r, total);
        long at = 0;
        for (Tensor t : parts) {
            CudaNative.copy2d(out.ptr() + at * Float.BYTES, total, p(t), t.size(1), t.size(1), r);
            at += t.size(1);
        }
        return out;
    }

    // ---- matrix products -------------------------------------------------------------------------

    @Override
    public Tensor matmul(Tensor a, Tensor b, boolean transposeA, boolean transposeB) {
        int m = transposeA ? cols(a) : rows(a), k = transposeA ? rows(a) : cols(a);
        int kb = transposeB ? cols(b) : rows(b), n = transposeB ? rows(b) : cols(b);
        if (k != kb) throw new IllegalArgumentException("matmul: " + a.describe() + " and " + b.describe() + " do not fit");
        CudaTensor out = alloc(m, n);
        CudaNative.gemm(transposeA, transposeB, m, n, k, p(a), p(b), out.ptr());
        return out;
    }

    @Override
    public Tensor batchMatmul(Tensor a, Tensor b, boolean transposeA, boolean transposeB) {
        int batch = Math.toIntExact(a.size(0));
        int m = Math.toIntExact(transposeA ? a.size(2) : a.size(1)), k = Math.toIntExact(transposeA ? a.size(1) : a.size(2));
        int kb = Math.toIntExact(transposeB ? b.size(2) : b.size(1)), n = Math.toIntExact(transposeB ? b.size(1) : b.size(2));
        if (k != kb || b.size(0) != batch) {
            throw new IllegalArgumentException("batchMatmul: " + a.describe() + " and " + b.describe() + " do not fit");
        }
        CudaTensor out = alloc(batch, m, n);
        CudaNative.gemmBatched(transposeA, transposeB, m, n, k, batch, p(a), p(b), out.ptr());
        return out;
    }

    // ---- element-wise ----------------------------------------------------------------------------

    private static void sameShape(String op, Tensor x, Tensor y) {
        if (!Arrays.equals(x.shape(), y.shape())) {
            throw new IllegalArgumentException(op + ": shapes differ, " + x.describe() + " and " + y.describe());
        }
    }

    private Tensor binary(String name, int op, Tensor x, Tensor y) {
        sameShape(name, x, y);
        CudaTensor out = alloc(x.shape());
        CudaNative.binary(op, p(x), p(y), out.ptr(), x.length());
        return out;
    }

    @Override
    public Tensor add(Tensor a, Tensor b) {
        return binary("add", CudaNative.ADD, a, b);
    }

    @Override
    public Tensor sub(Tensor a, Tensor b) {
        return binary("sub", CudaNative.SUB, a, b);
    }

    @Override
    public Tensor mul(Tensor a, Tensor b) {
        return binary("mul", CudaNative.MUL, a, b);
    }

    @Override
    public Tensor div(Tensor a, Tensor b) {
        return binary("div", CudaNative.DIV, a, b);
    }

    @Override
    public Tensor scale(Tensor a, float factor) {
        CudaTensor out = alloc(a.shape());
        CudaNative.scale(p(a), factor, out.ptr(), a.length());
        return out;
    }

    private Tensor rowVector(int op, Tensor a, Tensor row) {
        int width = lastDim(a);
        if (row.length() != width) throw new IllegalArgumentException("row vector " + row.describe() + " for " + a.describe());
        CudaTensor out = alloc(a.shape());
        CudaNative.rowVector(op, p(a), p(row), out.ptr(), a.length() / width, width);
        return out;
    }

    @Override
    public Tensor addRowVector(Tensor a, Tensor row) {
        return rowVector(CudaNative.ADD, a, row);
    }

    @Override
    public Tensor mulRowVector(Tensor a, Tensor row) {
        return rowVector(CudaNative.MUL, a, row);
    }

    /** One pass instead of activate then mul: a SwiGLU MLP's [tokens, 14336] intermediates at 8B. */
    @Override
    public Tensor gatedActivation(Tensor gate, Tensor up, Activation activation) {
        sameShape("gatedActivation", gate, up);
        CudaTensor out = alloc(gate.shape());
        CudaNative.gatedActivation(activation.ordinal(), p(gate), p(up), out.ptr(), gate.length());
        return out;
    }

    @Override
    public Tensor[] gatedActivationBackward(Tensor gate, Tensor up, Tensor dy, Activation activation) {
        sameShape("gatedActivationBackward", gate, up);
        sameShape("gatedActivationBackward", gate, dy);
        CudaTensor dGate = alloc(gate.shape()), dUp = alloc(gate.shape());
        CudaNative.gatedActivationBackward(activation.ordinal(), p(gate), p(up), p(dy), dGate.ptr(), dUp.ptr(), gate.length());
        return new Tensor[] {dGate, dUp};
    }

    @Override
    public Tensor activate(Tensor a, Activation activation) {
        CudaTensor out = alloc(a.shape());
        CudaNative.activate(activation.ordinal(), p(a), out.ptr(), a.length());
        return out;
    }

    @Override
    public Tensor reciprocal(Tensor a) {
        CudaTensor out = alloc(a.shape());
        CudaNative.reciprocal(p(a), out.ptr(), a.length());
        return out;
    }

    /** 0 for an absent tensor; otherwise its pointer, checked to hold {@code length} elements. */
    private long pOrZero(Tensor t, long length, String what) {
        if (t == null) return 0;
        if (t.length() != length) throw new IllegalArgumentException(what + " " + t.describe() + ": expected " + length + " elements");
        return p(t);
    }

    @Override
    public Tensor[] scaleShiftLinear(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor, Tensor rowShift) {
        int r = rows(w), cl = cols(w);
        CudaTensor w2 = alloc(r, cl);
        CudaTensor b2 = b == null && colShift == null ? null : alloc(r);
        CudaNative.scaleShiftLinear(p(w), r, cl, pOrZero(b, r, "bias"), pOrZero(colScale, cl, "column scale"),
                pOrZero(colShift, cl, "column shift"), pOrZero(rowFactor, r, "row factor"), pOrZero(rowShift, r, "row shift"),
                w2.ptr(), b2 == null ? 0 : b2.ptr());
        return new Tensor[] {w2, b2};
    }

    // ---- reductions ------------------------------------------------------------------------------

    @Override
    public double sum(Tensor a) {
        return CudaNative.sum(p(a), a.length(), false);
    }

    @Override
    public double sumOfSquares(Tensor a) {
        return CudaNative.sum(p(a), a.length(), true);
    }

    @Override
    public double[] rowLogSumExp(Tensor a) {
        double[] out = new double[rows(a)];
        CudaNative.rowLogSumExp(p(a), rows(a), cols(a), out);
        return out;
    }

    @Override
    public float[] pickPerRow(Tensor a, int[] columns) {
        if (columns.length != a.size(0)) throw new IllegalArgumentException(columns.length + " columns for " + a.describe());
        for (int c : columns) if (c < 0 || c >= a.size(1)) throw new IndexOutOfBoundsException("column " + c + " of " + a.describe());
        float[] out = new float[columns.length];
        CudaNative.pickPerRow(p(a), rows(a), cols(a), columns, out);
        return out;
    }

    @Override
    public Tensor rowAbsMax(Tensor a) {
        CudaTensor out = alloc(a.size(0));
        CudaNative.rowAbsMax(p(a), rows(a), cols(a), out.ptr());
        return out;
    }

    @Override
    public Tensor windowColumnRanges(Tensor a, int seq) {
        if (a.rank() != 2 || a.size(0) % seq != 0) {
            throw new IllegalArgumentException("windowColumnRanges needs [windows·" + seq + ", cols], got " + a.describe());
        }
        int windows = (int) (a.size(0) / seq);
        CudaTensor out = alloc(windows, 2 * a.size(1));
        CudaNative.windowColumnRanges(p(a), windows, seq, cols(a), out.ptr());
        return out;
    }

    // ---- normalization and attention -------------------------------------------------------------

    @Override
    public Tensor rmsNorm(Tensor x, Tensor weight, float eps) {
        int width = lastDim(x);
        CudaTensor out = alloc(x.shape());
        CudaNative.rmsNorm(p(x), p(weight), eps, Math.toIntExact(x.length() / width), width, out.ptr());
        return out;
    }

    @Override
    public Tensor layerNorm(Tensor x, Tensor weight, Tensor bias, float eps) {
        int width = lastDim(x);
        CudaTensor out = alloc(x.shape());
        CudaNative.layerNorm(p(x), p(weight), bias == null ? 0 : p(bias), eps, Math.toIntExact(x.length() / width), width, out.ptr());
        return out;
    }

    @Override
    public Tensor splitHeads(Tensor x, int batch, int seq, int heads, int headDim) {
        CudaTensor out = alloc((long) batch * heads, seq, headDim);
        CudaNative.permute0213(p(x), batch, seq, heads, headDim, out.ptr());
        return out;
    }

    @Override
    public Tensor mergeHeads(Tensor x, int batch, int seq, int heads, int headDim) {
        CudaTensor out = alloc((long) batch * seq, (long) heads * headDim);
        CudaNative.permute0213(p(x), batch, heads, seq, headDim, out.ptr());
        return out;
    }

    @Override
    public Tensor repeatHeads(Tensor x, int batch, int kvHeads, int groups) {
        if (groups == 1) return x;
        long per = x.size(1) * x.size(2);
        CudaTensor out = alloc((long) batch * kvHeads * groups, x.size(1), x.size(2));
        CudaNative.repeatHeads(p(x), (long) batch * kvHeads, groups, per, false, out.ptr());
        return out;
    }

    @Override
    public Tensor rope(Tensor x, float[] invFreq) {
        return rotate(x, invFreq, 1f);
    }

    private Tensor rotate(Tensor x, float[] invFreq, float sign) {
        CudaTensor out = alloc(x.shape());
        CudaNative.rope(p(x), Math.toIntExact(x.size(0)), Math.toIntExact(x.size(1)), Math.toIntExact(x.size(2)), invFreq, sign, out.ptr());
        return out;
    }

    @Override
    public Tensor causalSoftmax(Tensor scores, float scale) {
        int seq = Math.toIntExact(scores.size(1));
        if (scores.size(2) != seq) throw new IllegalArgumentException("causal softmax needs square scores, got " + scores.describe());
        CudaTensor out = alloc(scores.shape());
        CudaNative.causalSoftmax(p(scores), Math.toIntExact(scores.size(0)), seq, scale, out.ptr());
        return out;
    }

    // ---- backward --------------------------------------------------------------------------------

    @Override
    public Tensor[] rmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy) {
        int width = lastDim(x);
        CudaTensor dx = alloc(x.shape()), dw = alloc(width);
        CudaNative.rmsNormBackward(p(x), p(weight), eps, p(dy), Math.toIntExact(x.length() / width), width, dx.ptr(), dw.ptr());
        return new Tensor[] {dx, dw};
    }

    @Override
    public Tensor[] layerNormBackward(Tensor x, Tensor weight, float eps, Tensor dy) {
        int width = lastDim(x);
        CudaTensor dx = alloc(x.shape()), dw = alloc(width), db = alloc(width);
        CudaNative.layerNormBackward(p(x), p(weight), eps, p(dy), Math.toIntExact(x.length() / width), width,
                dx.ptr(), dw.ptr(), db.ptr());
        return new Tensor[] {dx, dw, db};
    }

    @Override
    public Tensor causalSoftmaxBackward(Tensor probs, Tensor dProbs, float scale) {
        sameShape("causalSoftmaxBackward", probs, dProbs);
        int seq = Math.toIntExact(probs.size(2));
        CudaTensor out = alloc(probs.shape());
        CudaNative.causalSoftmaxBackward(p(probs), p(dProbs), probs.length() / seq, seq, scale, out.ptr());
        return out;
    }

    @Override
    public Tensor ropeBackward(Tensor dy, float[] invFreq) {
        return rotate(dy, invFreq, -1f);
    }

    @Override
    public Tensor activationBackward(Tensor x, Tensor dy, Activation activation) {
        sameShape("activationBackward", x, dy);
        CudaTensor out = alloc(x.shape());
        CudaNative.activationBackward(activation.ordinal(), p(x), p(dy), out.ptr(), x.length());
        return out;
    }

    @Override
    public Tensor columnSums(Tensor a) {
        if (a.rank() != 2) throw new IllegalArgumentException("columnSums needs a 2-D tensor, got " + a.describe());
        CudaTensor out = alloc(a.size(1));
        CudaNative.columnSums(p(a), rows(a), cols(a), out.ptr());
        return out;
    }

    @Override
    public Tensor sumRepeatedHeads(Tensor x, int batch, int kvHeads, int groups) {
        if (groups == 1) return x;
        long per = x.size(1) * x.size(2);
        CudaTensor out = alloc((long) batch * kvHeads, x.size(1), x.size(2));
        CudaNative.repeatHeads(p(x), (long) batch * kvHeads, groups, per, true, out.ptr());
        return out;
    }

    @Override
    public Tensor scatterAddColumns(Tensor x, int[] columns, int width) {
        if (columns.length != x.size(1)) throw new IllegalArgumentException(columns.length + " columns for " + x.describe());
        CudaTensor out = alloc(x.size(0), width);
        CudaNative.scatterAddColumns(p(x), rows(x), columns, width, out.ptr());
        return out;
    }

    @Override
    public Tensor[] scaleShiftLinearBackward(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor,
                                             Tensor rowShift, Tensor dW, Tensor dB) {
        int r = rows(w), cl = cols(w);
        if (!Arrays.equals(w.shape(), dW.shape())) throw new IllegalArgumentException("scaleShiftLinearBackward: " + dW.describe() + " for " + w.describe());
        CudaTensor gs = colScale == null ? null : alloc(cl);
        CudaTensor gd = colShift == null || dB == null ? null : alloc(cl);
        CudaTensor gr = rowFactor == null ? null : alloc(r);
        CudaTensor gdr = rowShift == null ? null : alloc(r);
        CudaNative.scaleShiftLinearBackward(p(w), r, cl, pOrZero(b, r, "bias"), pOrZero(colScale, cl, "column scale"),
                pOrZero(colShift, cl, "column shift"), pOrZero(rowFactor, r, "row factor"), pOrZero(rowShift, r, "row shift"),
                p(dW), pOrZero(dB, r, "bias gradient"), gs == null ? 0 : gs.ptr(), gd == null ? 0 : gd.ptr(),
                gr == null ? 0 : gr.ptr(), gdr == null ? 0 : gdr.ptr());
        return new Tensor[] {gs, gd, gr, gdr};
    }

    @Override
    public Tensor[] fakeQuantizeClippedBackward(Tensor w, Tensor gamma, Tensor beta, int group, int bits, Tensor dOut) {
        io.blockquant.quant.ClippedQuantizer.checkShapes(w, gamma, beta, group);
        if (!Arrays.equals(w.shape(), dOut.shape())) throw new IllegalArgumentException("fakeQuantizeClippedBackward: " + dOut.describe() + " for " + w.describe());
        CudaTensor dw = alloc(w.shape()), dg = alloc(gamma.shape()), db = alloc(beta.shape());
        CudaNative.fakeQuantizeClippedBackward(p(w), rows(w), cols(w), group, bits, p(gamma), p(beta), p(dOut), dw.ptr(),
                dg.ptr(), db.ptr());
        return new Tensor[] {dw, dg, db};
    }

    // ---- quantization ----------------------------------------------------------------------------

    @Override
    public Tensor fakeQuantizeClipped(Tensor w, Tensor gamma, Tensor beta, int group, int bits) {
        io.blockquant.quant.ClippedQuantizer.checkShapes(w, gamma, beta, group);
        CudaTensor out = alloc(w.shape());
        CudaNative.fakeQuantizeClipped(p(w), rows(w), cols(w), group, bits, p(gamma), p(beta), out.ptr());
        return out;
    }

    // ---- in-place updates ------------------------------------------------------------------------

    @Override
    public void adamW(Tensor p, Tensor g, Tensor m, Tensor v, int step, double lr, double beta1, double beta2, double eps,
                      double weightDecay) {
        for (Tensor t : new Tensor[] {g, m, v}) {
            if (!Arrays.equals(p.shape(), t.shape())) throw new IllegalArgumentException("adamW: " + t.describe() + " for " + p.describe());
        }
        CudaNative.adamW(p(p), p(g), p(m), p(v), p.length(), lr, beta1, beta2, eps, weightDecay, 1 - Math.pow(beta1, step),
                1 - Math.pow(beta2, step));
    }

    @Override
    public void clampAwayFromZero(Tensor t, float min) {
        CudaNative.clampAwayFromZero(p(t), t.length(), min);
    }

    @Override
    public Tensor fakeQuantizeWeight(Tensor w, IntQuantSpec spec) {
        int r = rows(w), cols = cols(w);
        int group = spec.perChannel() ? cols : spec.groupSize();
        if (cols % group != 0) throw new IllegalArgumentException("group size " + group + " does not divide the input width " + cols);
        CudaTensor out = alloc(w.shape());
        CudaNative.fakeQuantizeWeight(p(w), r, cols, group, spec.bits(), spec.symmetric(), out.ptr());
        return out;
    }

    @Override
    public Tensor fakeQuantizeTokens(Tensor x, int bits) {
        int width = lastDim(x);
        CudaTensor out = alloc(x.shape());
        CudaNative.fakeQuantizeTokens(p(x), Math.toIntExact(x.length() / width), width, bits, out.ptr());
        return out;
    }

    /** {@code IntQuantizer.fakeQuantizeTokensAsym}'s arithmetic in one kernel (OmniQuant's W4A4/W6A6 steps run it on every linear input). */
    @Override
    public Tensor fakeQuantizeTokensAsym(Tensor x, int bits) {
        int width = lastDim(x);
        CudaTensor out = alloc(x.shape());
        CudaNative.fakeQuantizeTokensAsym(p(x), Math.toIntExact(x.length() / width), width, bits, out.ptr());
        return out;
    }

    @Override
    public Tensor fakeQuantizeTokensFp(Tensor x, FpFormat format) {
        int width = lastDim(x);
        CudaTensor out = alloc(x.shape());
        CudaNative.fakeQuantizeTokensFp(p(x), Math.toIntExact(x.length() / width), width, format.mantissaBits(),
                format.bias(), format.maxCode(), format.maxValue(), out.ptr());
        return out;
    }

    @Override
    public Tensor fakeQuantizeTokensBackward(Tensor x, Tensor dy, io.blockquant.quant.TokenQuant q) {
        if (q == null) return dy;
        int width = lastDim(x);
        CudaTensor dx = alloc(x.shape());
        FpFormat f = q.format();
        int rule = f != null ? 2 : q.asymmetric() ? 1 : 0;
        CudaNative.fakeQuantizeTokensBackward(p(x), p(dy), Math.toIntExact(x.length() / width), width, rule, q.bits(),
                f == null ? 0 : f.mantissaBits(), f == null ? 0 : f.bias(), f == null ? 0 : f.maxCode(), f == null ? 0f : f.maxValue(),
                dx.ptr());
        return dx;
    }

    // ---- linear algebra --------------------------------------------------------------------------

    @Override
    public Tensor cholesky(Tensor a) {
        int n = rows(a);
        CudaTensor out = alloc(n, n);
        int info = CudaNative.cholesky(p(a), n, out.ptr());
        if (info != 0) {
            out.close();
            throw new ArithmeticException("cholesky: the " + a.describe() + " matrix is not positive definite (cuSOLVER info " + info + ")");
        }
        return out;
    }

    @Override
    public Tensor solveTriangular(Tensor t, Tensor b, boolean lower) {
        int n = rows(t), m = cols(b);
        if (t.size(1) != n || b.size(0) != n) {
            throw new IllegalArgumentException("solveTriangular: " + t.describe() + " and " + b.describe() + " do not fit");
        }
        CudaTensor out = alloc(n, m);
        CudaNative.solveTriangular(p(t), p(b), n, m, lower, out.ptr());
        return out;
    }

    /** A solve against the identity (made on the device: a heap identity of a 14336² factor is 0.8 GB): no trtri is bound. */
    @Override
    public Tensor invertTriangular(Tensor t, boolean lower) {
        int n = rows(t);
        float[] ones = new float[n];
        Arrays.fill(ones, 1f);
        CudaTensor eye = (CudaTensor) zeros(n, n);
        CudaNative.scaleAddDiagonal(eye.ptr(), n, 1f, ones);
        Tensor out = solveTriangular(t, eye, lower);
        eye.close();
        return out;
    }

    @Override
    public Tensor[] svd(Tensor a) {
        int m = rows(a), n = cols(a), k = Math.min(m, n);
        CudaTensor u = alloc(m, k), s = alloc(k), v = alloc(n, k);
        int info = CudaNative.svd(p(a), m, n, u.ptr(), s.ptr(), v.ptr());
        if (info != 0) throw new ArithmeticException("svd of " + a.describe() + " did not converge (cuSOLVER info " + info + ")");
        return new Tensor[] {u, s, v};
    }

    /**
     * GPTQ's column loop in one kernel per lazy block (a warp per row, the row's 128 columns in registers) and one
     * cuBLAS product per lazy update, W and the factor resident on the device: the Java loop's thousands of small
     * steps and its per-block copies of W's remainder across the bus were what made a real-width layer slow.
     */
    @Override
    public Double gptqIntColumns(float[] w, int rows, int cols, float[] hinvUpper, int blockSize, int group, int bits,
                                 boolean symmetric, int[] levels, float[] scales, float[] zeros) {
        if (blockSize > 128) return null;
        bound();
        return CudaNative.gptqInt(w, rows, cols, hinvUpper, blockSize, group, bits, symmetric, levels, scales, zeros);
    }

    /** The column loop on W and the factor as they are on the device: nothing crosses the bus but the levels. */
    @Override
    public Double gptqIntColumns(Tensor w, Tensor hinvUpper, int blockSize, int group, int bits, boolean symmetric,
                                 int[] levels, float[] scales, float[] zeros) {
        if (blockSize > 128) return null;
        int rows = rows(w), cols = cols(w);
        if (hinvUpper.size(0) != cols || hinvUpper.size(1) != cols) {
            throw new IllegalArgumentException("gptqIntColumns: " + w.describe() + " with a factor " + hinvUpper.describe());
        }
        return CudaNative.gptqIntDevice(p(w), rows, cols, p(hinvUpper), blockSize, group, bits, symmetric, levels, scales, zeros);
    }

    @Override
    public GramSum deviceGramSum(int columns) {
        return new DeviceGramSum(this, columns);
    }

    /** {@code Σ xᵀx} in float32 on the device, one cuBLAS product accumulated per batch (β = 1). */
    private static final class DeviceGramSum implements GramSum {
        private final CudaBackend be;
        private final int n;
        private CudaTensor sum;
        private long rows;

        DeviceGramSum(CudaBackend be, int n) {
            this.be = be;
            this.n = n;
            this.sum = (CudaTensor) be.zeros(n, n);
        }

        @Override
        public int columns() {
            return n;
        }

        @Override
        public long rows() {
            return rows;
        }

        @Override
        public void add(Tensor x) {
            if (x.size(1) != n) throw new IllegalArgumentException("Hessian of " + n + " columns fed a " + x.describe() + " input");
            CudaNative.gemmAccumulate(true, false, n, n, CudaBackend.rows(x), be.p(x), be.p(x), live().ptr());
            rows += x.size(0);
        }

        @Override
        public double[] diagonal() {
            int[] iota = new int[n];
            for (int i = 0; i < n; i++) iota[i] = i;
            float[] d = be.pickPerRow(live(), iota);
            double[] out = new double[n];
            for (int i = 0; i < n; i++) out[i] = d[i];
            return out;
        }

        /** On a copy: the sum stays for the layers' errors ({@link #quadraticForms}). */
        @Override
        public Tensor scaledWithDiagonal(TensorBackend target, double f, double[] d, int[] perm) {
            if (target != be) throw new IllegalArgumentException("a Hessian on " + be.name() + " asked for on " + target.name());
            CudaTensor h = be.alloc(n, n);
            CudaNative.copy(h.ptr(), live().ptr(), (long) n * n * Float.BYTES);
            float[] dOriginal = new float[n]; // d is in the permuted order: position i is column perm[i]
            for (int i = 0; i < n; i++) dOriginal[perm[i]] = (float) d[i];
            CudaNative.scaleAddDiagonal(h.ptr(), n, (float) f, dOriginal);
            boolean identity = true;
            for (int i = 0; i < n && identity; i++) identity = perm[i] == i;
            if (identity) return h;
            Tensor columns = be.selectColumns(h, perm);
            h.close();
            Tensor out = be.gatherRows(columns, perm);
            columns.close();
            return out;
        }

        @Override
        public double[] quadraticForms(Tensor... a) {
            double[] out = new double[a.length];
            for (int i = 0; i < a.length; i++) out[i] = GramSum.quadraticForm(a[i], live());
            return out;
        }

        private CudaTensor live() {
            if (sum == null) throw new IllegalStateException("this Hessian sum was spent or closed");
            return sum;
        }

        @Override
        public void close() {
            if (sum != null) sum.close();
            sum = null;
        }
    }
}
