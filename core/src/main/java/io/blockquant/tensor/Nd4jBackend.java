package io.blockquant.tensor;

import org.bytedeco.openblas.global.openblas;

import io.blockquant.quant.IntQuantSpec;
import io.blockquant.quant.IntQuantizer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.transforms.strict.Erf;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * The CPU backend: ND4J (OpenBLAS) for matrix products, element-wise arithmetic and LAPACK; plain Java
 * loops over row-major arrays for the few steps whose exact semantics matter more than their speed
 * (norms, RoPE, causal softmax, fake quantization), so they match the Hugging Face reference bit for bit
 * in intent and are easy to read.
 */
public final class Nd4jBackend implements TensorBackend {

    public static final Nd4jBackend INSTANCE = new Nd4jBackend();

    private Nd4jBackend() {
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
    }

    @Override
    public String name() {
        return "cpu-nd4j";
    }

    static final class Nd4jTensor implements Tensor {
        final INDArray array;

        Nd4jTensor(INDArray array) {
            this.array = array;
        }

        @Override
        public long[] shape() {
            return array.shape();
        }

        @Override
        public TensorBackend backend() {
            return INSTANCE;
        }

        @Override
        public void close() {
            if (!array.isView() && array.closeable()) array.close();
        }

        @Override
        public String toString() {
            return describe();
        }
    }

    private static INDArray a(Tensor t) {
        if (!(t instanceof Nd4jTensor)) {
            throw new IllegalArgumentException("tensor " + t.describe() + " does not belong to the ND4J backend");
        }
        return ((Nd4jTensor) t).array;
    }

    /** Wraps a result, making it a contiguous row-major array of its own. */
    private static Tensor t(INDArray array) {
        if (array.isView() || array.ordering() != 'c' || array.dataType() != DataType.FLOAT) {
            array = array.castTo(DataType.FLOAT).dup('c');
        }
        return new Nd4jTensor(array);
    }

    private static Tensor t(float[] data, long... shape) {
        // bulk copy into the off-heap buffer (Nd4j.create(float[]) copies element by element)
        INDArray array = Nd4j.createUninitialized(DataType.FLOAT, shape, 'c');
        floatView(array).put(data);
        return new Nd4jTensor(array);
    }

    private static java.nio.FloatBuffer floatView(INDArray array) {
        return array.data().asNio().order(java.nio.ByteOrder.nativeOrder()).asFloatBuffer();
    }

    // ---- creation and transfer -------------------------------------------------------------------

    @Override
    public Tensor fromFloats(float[] data, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        if (n != data.length) {
            throw new IllegalArgumentException("shape " + java.util.Arrays.toString(shape) + " needs " + n
                    + " values, got " + data.length);
        }
        return t(data, shape);
    }

    @Override
    public Tensor zeros(long... shape) {
        return new Nd4jTensor(Nd4j.zeros(DataType.FLOAT, shape));
    }

    @Override
    public float[] toFloats(Tensor t) {
        INDArray x = a(t);
        if (x.isView() || x.ordering() != 'c' || x.data().length() != x.length()) x = x.dup('c');
        float[] out = new float[(int) x.length()];
        floatView(x).get(out);
        return out;
    }

    @Override
    public void toBytes(Tensor t, long from, java.nio.ByteBuffer dst) {
        INDArray x = a(t);
        if (x.isView() || x.ordering() != 'c' || x.data().length() != x.length()) x = x.dup('c');
        int n = dst.remaining() / Float.BYTES;
        if (from < 0 || from + n > x.length()) throw new IndexOutOfBoundsException("elements " + from + "+" + n + " of " + x.length());
        java.nio.FloatBuffer src = floatView(x);
        src.position(Math.toIntExact(from)).limit(Math.toIntExact(from + n));
        java.nio.ByteBuffer le = dst.slice().order(java.nio.ByteOrder.LITTLE_ENDIAN);
        le.asFloatBuffer().put(src);
        dst.position(dst.position() + n * Float.BYTES);
    }

    private static final org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration SCRATCH =
            org.nd4j.linalg.api.memory.conf.WorkspaceConfiguration.builder()
                    .initialSize(0)
                    .policyAllocation(org.nd4j.linalg.api.memory.enums.AllocationPolicy.OVERALLOCATE)
                    .overallocationLimit(0.2)
                    .policyLearning(org.nd4j.linalg.api.memory.enums.LearningPolicy.FIRST_LOOP)
                    .policySpill(org.nd4j.linalg.api.memory.enums.SpillPolicy.REALLOCATE)
                    .policyReset(org.nd4j.linalg.api.memory.enums.ResetPolicy.BLOCK_LEFT)
                    .build();

    /** Nesting depth of scratch scopes on this thread: each depth has its own ND4J workspace. */
    private static final ThreadLocal<int[]> DEPTH = ThreadLocal.withInitial(() -> new int[1]);

    @Override
    public Tensor scratch(java.util.function.Supplier<Tensor> work) {
        return scratchValue(() -> new Nd4jTensor(a(work.get()).detach()));
    }

    /** Frees this thread's scratch workspaces (a Spark task's thread, when the task ends); the next scope allocates anew. */
    /** The instance, after ND4J has loaded its backend (natives): a missing ND4J fails here, not mid-block. */
    static Nd4jBackend loaded() {
        Nd4j.getBackend();
        return INSTANCE;
    }

    @Override
    public void endTask() {
        releaseThreadScratch(null);
    }

    public static void releaseThreadScratch(Object ignored) {
        if (DEPTH.get()[0] == 0) Nd4j.getWorkspaceManager().destroyAllWorkspacesForCurrentThread();
    }

    @Override
    public <T> T scratchValue(java.util.function.Supplier<T> work) {
        int[] depth = DEPTH.get();
        String id = "blockquant-scratch-" + depth[0];
        depth[0]++;
        try (org.nd4j.linalg.api.memory.MemoryWorkspace ws =
                     Nd4j.getWorkspaceManager().getAndActivateWorkspace(SCRATCH, id)) {
            return work.get();
        } finally {
            depth[0]--;
        }
    }

    // ---- layout ----------------------------------------------------------------------------------

    @Override
    public Tensor reshape(Tensor x, long... shape) {
        return t(a(x).reshape('c', shape));
    }

    @Override
    public Tensor transpose(Tensor x) {
        return t(a(x).transpose());
    }

    @Override
    public Tensor rows(Tensor x, long from, long to) {
        return t(a(x).get(org.nd4j.linalg.indexing.NDArrayIndex.interval(from, to),
                org.nd4j.linalg.indexing.NDArrayIndex.all()));
    }

    @Override
    public Tensor columns(Tensor x, long from, long to) {
        return t(a(x).get(org.nd4j.linalg.indexing.NDArrayIndex.all(),
                org.nd4j.linalg.indexing.NDArrayIndex.interval(from, to)));
    }

    @Override
    public Tensor selectColumns(Tensor x, int[] columns) {
        int rows = (int) x.size(0), cols = (int) x.size(1);
        float[] in = toFloats(x);
        float[] out = new float[rows * columns.length];
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < columns.length; j++) out[r * columns.length + j] = in[r * cols + columns[j]];
        }
        return t(out, rows, columns.length);
    }

    @Override
    public Tensor gatherRows(Tensor table, int[] rows) {
        int width = (int) table.size(1);
        long height = table.size(0);
        float[] in = toFloats(table);
        float[] out = new float[rows.length * width];
        for (int i = 0; i < rows.length; i++) {
            if (rows[i] < 0 || rows[i] >= height) {
                throw new IndexOutOfBoundsException("row " + rows[i] + " outside a table of " + height + " rows");
            }
            System.arraycopy(in, rows[i] * width, out, i * width, width);
        }
        return t(out, rows.length, width);
    }

    @Override
    public Tensor concatColumns(Tensor... parts) {
        INDArray[] arrays = new INDArray[parts.length];
        for (int i = 0; i < parts.length; i++) arrays[i] = a(parts[i]);
        return t(Nd4j.concat(1, arrays));
    }

    // ---- matrix products -------------------------------------------------------------------------

    @Override
    public Tensor matmul(Tensor x, Tensor y, boolean transposeA, boolean transposeB) {
        return t(Nd4j.gemm(a(x), a(y), transposeA, transposeB));
    }

    @Override
    public Tensor batchMatmul(Tensor x, Tensor y, boolean transposeA, boolean transposeB) {
        return t(Nd4j.matmul(a(x), a(y), transposeA, transposeB, false));
    }

    // ---- element-wise ----------------------------------------------------------------------------

    @Override
    public Tensor add(Tensor x, Tensor y) {
        sameShape("add", x, y);
        return t(a(x).add(a(y)));
    }

    @Override
    public Tensor sub(Tensor x, Tensor y) {
        sameShape("sub", x, y);
        return t(a(x).sub(a(y)));
    }

    @Override
    public Tensor mul(Tensor x, Tensor y) {
        sameShape("mul", x, y);
        return t(a(x).mul(a(y)));
    }

    @Override
    public Tensor div(Tensor x, Tensor y) {
        sameShape("div", x, y);
        return t(a(x).div(a(y)));
    }

    @Override
    public Tensor scale(Tensor x, float factor) {
        return t(a(x).mul(factor));
    }

    @Override
    public Tensor addRowVector(Tensor x, Tensor row) {
        return t(a(x).addRowVector(a(row).reshape(1, row.length())));
    }

    @Override
    public Tensor mulRowVector(Tensor x, Tensor row) {
        return t(a(x).mulRowVector(a(row).reshape(1, row.length())));
    }

    @Override
    public Tensor activate(Tensor x, Activation activation) {
        INDArray in = a(x);
        switch (activation) {
            case RELU:
                return t(Transforms.relu(in, true));
            case SILU:
                return t(in.mul(Transforms.sigmoid(in, true)));
            case GELU: {
                // x·Φ(x) = x/2·(1 + erf(x/√2))
                INDArray erf = Nd4j.exec(new Erf(in.mul(1.0 / Math.sqrt(2.0))));
                return t(in.mul(erf.addi(1.0)).muli(0.5));
            }
            case GELU_TANH: {
                INDArray inner = in.mul(in).muli(0.044715).addi(1.0).muli(in).muli(Math.sqrt(2.0 / Math.PI));
                return t(in.mul(Transforms.tanh(inner, false).addi(1.0)).muli(0.5));
            }
            default:
                throw new IllegalArgumentException("unknown activation " + activation);
        }
    }

    @Override
    public Tensor reciprocal(Tensor x) {
        float[] v = toFloats(x);
        for (int i = 0; i < v.length; i++) v[i] = 1f / v[i];
        return t(v, x.shape());
    }

    @Override
    public Tensor[] scaleShiftLinear(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor, Tensor rowShift) {
        int out = (int) w.size(0), in = (int) w.size(1);
        float[][] r = io.blockquant.quant.ScaleShift.forward(toFloats(w), out, in, orNull(b), orNull(colScale), orNull(colShift),
                orNull(rowFactor), orNull(rowShift));
        return new Tensor[] {t(r[0], out, in), r[1] == null ? null : t(r[1], out)};
    }

    private float[] orNull(Tensor x) {
        return x == null ? null : toFloats(x);
    }

    private static Tensor vectorOrNull(float[] v) {
        return v == null ? null : t(v, v.length);
    }

    private static void sameShape(String op, Tensor x, Tensor y) {
        if (!java.util.Arrays.equals(x.shape(), y.shape())) {
            throw new IllegalArgumentException(op + ": shapes differ, " + x.describe() + " and " + y.describe());
        }
    }

    // ---- reductions ------------------------------------------------------------------------------

    @Override
    public double sum(Tensor x) {
        double s = 0;
        for (float v : toFloats(x)) s += v;
        return s;
    }

    @Override
    public double sumOfSquares(Tensor x) {
        double s = 0;
        for (float v : toFloats(x)) s += (double) v * v;
        return s;
    }

    @Override
    public double[] rowLogSumExp(Tensor x) {
        INDArray in = a(x);
        long rows = in.size(0);
        INDArray max = in.max(1).reshape('c', new long[] {rows, 1});
        INDArray sum = Transforms.exp(in.subColumnVector(max), false).sum(1).reshape('c', new long[] {rows, 1});
        INDArray lse = Transforms.log(sum, false).addi(max);
        float[] f = toFloats(t(lse.reshape('c', new long[] {rows})));
        double[] out = new double[f.length];
        for (int i = 0; i < f.length; i++) out[i] = f[i];
        return out;
    }

    @Override
    public float[] pickPerRow(Tensor x, int[] columns) {
        INDArray in = a(x);
        int cols = (int) x.size(1);
        java.nio.FloatBuffer view = floatView(in);
        float[] out = new float[columns.length];
        for (int r = 0; r < columns.length; r++) out[r] = view.get(r * cols + columns[r]);
        return out;
    }

    @Override
    public Tensor rowAbsMax(Tensor x) {
        int rows = (int) x.size(0), cols = (int) x.size(1);
        float[] in = toFloats(x);
        float[] out = new float[rows];
        for (int r = 0; r < rows; r++) {
            float m = 0f;
            for (int i = r * cols; i < (r + 1) * cols; i++) m = Math.max(m, Math.abs(in[i]));
            out[r] = m;
        }
        return t(out, rows);
    }

    // ---- normalization and attention -------------------------------------------------------------

    @Override
    public Tensor rmsNorm(Tensor x, Tensor weight, float eps) {
        int cols = (int) x.size(-1);
        int rows = (int) (x.length() / cols);
        float[] in = toFloats(x), w = toFloats(weight), out = new float[in.length];
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            float ss = 0f; // float32 like torch's pow(2).mean() on a float32 input
            for (int i = off; i < off + cols; i++) ss += in[i] * in[i];
            float inv = (float) (1.0 / Math.sqrt(ss / cols + eps));
            for (int i = 0; i < cols; i++) out[off + i] = w[i] * (in[off + i] * inv);
        }
        return t(out, x.shape());
    }

    @Override
    public Tensor layerNorm(Tensor x, Tensor weight, Tensor bias, float eps) {
        int cols = (int) x.size(-1);
        int rows = (int) (x.length() / cols);
        float[] in = toFloats(x), w = toFloats(weight), b = bias == null ? null : toFloats(bias);
        float[] out = new float[in.length];
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            double mean = 0;
            for (int i = off; i < off + cols; i++) mean += in[i];
            mean /= cols;
            double var = 0;
            for (int i = off; i < off + cols; i++) var += (in[i] - mean) * (in[i] - mean);
            var /= cols; // biased variance, as torch.nn.LayerNorm
            double inv = 1.0 / Math.sqrt(var + eps);
            for (int i = 0; i < cols; i++) {
                float v = (float) ((in[off + i] - mean) * inv) * w[i];
                out[off + i] = b == null ? v : v + b[i];
            }
        }
        return t(out, x.shape());
    }

    @Override
    public Tensor splitHeads(Tensor x, int batch, int seq, int heads, int headDim) {
        return t(a(x).reshape('c', new long[] {batch, seq, heads, headDim}).permute(0, 2, 1, 3).dup('c')
                .reshape('c', new long[] {(long) batch * heads, seq, headDim}));
    }

    @Override
    public Tensor mergeHeads(Tensor x, int batch, int seq, int heads, int headDim) {
        return t(a(x).reshape('c', new long[] {batch, heads, seq, headDim}).permute(0, 2, 1, 3).dup('c')
                .reshape('c', new long[] {(long) batch * seq, (long) heads * headDim}));
    }

    @Override
    public Tensor repeatHeads(Tensor x, int batch, int kvHeads, int groups) {
        if (groups == 1) return x;
        int seq = (int) x.size(1), d = (int) x.size(2);
        int per = seq * d;
        float[] in = toFloats(x), out = new float[in.length * groups];
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < kvHeads; h++) {
                int src = (b * kvHeads + h) * per;
                for (int g = 0; g < groups; g++) {
                    System.arraycopy(in, src, out, ((b * kvHeads + h) * groups + g) * per, per);
                }
            }
        }
        return t(out, (long) batch * kvHeads * groups, seq, d);
    }

    @Override
    public Tensor rope(Tensor x, float[] invFreq) {
        return rotate(x, invFreq, 1f);
    }

    /** Rotates each (x1, x2) pair by {@code sign·pos·invFreq[i]}; sign −1 is the transpose (the backward). */
    private Tensor rotate(Tensor x, float[] invFreq, float sign) {
        int n = (int) x.size(0), seq = (int) x.size(1), d = (int) x.size(2);
        int half = invFreq.length;
        float[] cos = new float[seq * half], sin = new float[seq * half];
        for (int p = 0; p < seq; p++) {
            for (int i = 0; i < half; i++) {
                float angle = p * invFreq[i];
                cos[p * half + i] = (float) Math.cos(angle);
                sin[p * half + i] = sign * (float) Math.sin(angle);
            }
        }
        float[] in = toFloats(x), out = in.clone();
        for (int h = 0; h < n; h++) {
            for (int p = 0; p < seq; p++) {
                int off = (h * seq + p) * d;
                for (int i = 0; i < half; i++) {
                    float x1 = in[off + i], x2 = in[off + half + i];
                    float c = cos[p * half + i], s = sin[p * half + i];
                    out[off + i] = x1 * c - x2 * s;
                    out[off + half + i] = x2 * c + x1 * s;
                }
            }
        }
        return t(out, x.shape());
    }

    @Override
    public Tensor causalSoftmax(Tensor scores, float scale) {
        int n = (int) scores.size(0), seq = (int) scores.size(1);
        if (scores.size(2) != seq) throw new IllegalArgumentException("causal softmax needs square scores, got " + scores.describe());
        // scale, add −∞ above the diagonal, then ND4J's (vectorized) row softmax; the diagonal is always
        // visible, so no row is all −∞
        INDArray x = a(scores).mul(scale).reshape('c', new long[] {n, (long) seq * seq});
        x.addiRowVector(causalMask(seq));
        INDArray rows = x.reshape('c', new long[] {(long) n * seq, seq});
        return t(Transforms.softmax(rows, false).reshape('c', new long[] {n, seq, seq}));
    }

    private final java.util.Map<Integer, INDArray> masks = new java.util.concurrent.ConcurrentHashMap<>();

    private INDArray causalMask(int seq) {
        return masks.computeIfAbsent(seq, s -> {
            float[] m = new float[s * s];
            for (int i = 0; i < s; i++) for (int j = i + 1; j < s; j++) m[i * s + j] = Float.NEGATIVE_INFINITY;
            try (var outside = Nd4j.getWorkspaceManager().scopeOutOfWorkspaces()) { // cached: must outlive any scratch
                return Nd4j.create(m, new long[] {1, (long) s * s}, 'c');
            }
        });
    }

    // ---- backward --------------------------------------------------------------------------------

    @Override
    public Tensor[] rmsNormBackward(Tensor x, Tensor weight, float eps, Tensor dy) {
        int cols = (int) x.size(-1);
        int rows = (int) (x.length() / cols);
        float[] in = toFloats(x), w = toFloats(weight), g = toFloats(dy), dx = new float[in.length];
        double[] dw = new double[cols];
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            float ss = 0f; // as the forward
            for (int i = off; i < off + cols; i++) ss += in[i] * in[i];
            double inv = (float) (1.0 / Math.sqrt(ss / cols + eps));
            // y = w·x·inv, inv = (mean(x²) + eps)^(−1/2): dx = inv·w·dy − x·inv³/n·Σ w·dy·x
            double dot = 0;
            for (int i = 0; i < cols; i++) {
                dot += (double) w[i] * g[off + i] * in[off + i];
                dw[i] += (double) g[off + i] * in[off + i] * inv;
            }
            double c = dot * inv * inv * inv / cols;
            for (int i = 0; i < cols; i++) dx[off + i] = (float) (inv * w[i] * g[off + i] - c * in[off + i]);
        }
        return new Tensor[] {t(dx, x.shape()), t(toFloatArray(dw), cols)};
    }

    @Override
    public Tensor[] layerNormBackward(Tensor x, Tensor weight, float eps, Tensor dy) {
        int cols = (int) x.size(-1);
        int rows = (int) (x.length() / cols);
        float[] in = toFloats(x), w = toFloats(weight), g = toFloats(dy), dx = new float[in.length];
        double[] dw = new double[cols], db = new double[cols];
        double[] xhat = new double[cols];
        for (int r = 0; r < rows; r++) {
            int off = r * cols;
            double mean = 0;
            for (int i = off; i < off + cols; i++) mean += in[i];
            mean /= cols;
            double var = 0;
            for (int i = off; i < off + cols; i++) var += (in[i] - mean) * (in[i] - mean);
            var /= cols;
            double inv = 1.0 / Math.sqrt(var + eps);
            // dx = inv·(gw − mean(gw) − x̂·mean(gw·x̂)), gw = w·dy
            double sumG = 0, sumGX = 0;
            for (int i = 0; i < cols; i++) {
                xhat[i] = (in[off + i] - mean) * inv;
                double gw = (double) w[i] * g[off + i];
                sumG += gw;
                sumGX += gw * xhat[i];
                dw[i] += g[off + i] * xhat[i];
                db[i] += g[off + i];
            }
            sumG /= cols;
            sumGX /= cols;
            for (int i = 0; i < cols; i++) {
                dx[off + i] = (float) (inv * ((double) w[i] * g[off + i] - sumG - xhat[i] * sumGX));
            }
        }
        return new Tensor[] {t(dx, x.shape()), t(toFloatArray(dw), cols), t(toFloatArray(db), cols)};
    }

    private static float[] toFloatArray(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) out[i] = (float) v[i];
        return out;
    }

    @Override
    public Tensor causalSoftmaxBackward(Tensor probs, Tensor dProbs, float scale) {
        sameShape("causalSoftmaxBackward", probs, dProbs);
        long seq = probs.size(2), rows = probs.length() / seq;
        INDArray p = a(probs).reshape('c', new long[] {rows, seq});
        INDArray dp = a(dProbs).reshape('c', new long[] {rows, seq});
        INDArray dot = p.mul(dp).sum(true, 1);                     // [rows, 1]
        return t(dp.subColumnVector(dot).muli(p).muli(scale).reshape('c', probs.shape()));
    }

    @Override
    public Tensor ropeBackward(Tensor dy, float[] invFreq) {
        return rotate(dy, invFreq, -1f);
    }

    @Override
    public Tensor activationBackward(Tensor x, Tensor dy, Activation activation) {
        sameShape("activationBackward", x, dy);
        INDArray in = a(x), g = a(dy);
        switch (activation) {
            case RELU:
                return t(g.mul(in.gt(0.0).castTo(DataType.FLOAT)));
            case SILU: {
                // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
                INDArray sig = Transforms.sigmoid(in, true);
                INDArray oneMinus = sig.rsub(1.0).muli(in).addi(1.0);
                return t(sig.muli(oneMinus).muli(g));
            }
            case GELU: {
                // d/dx x·Φ(x) = Φ(x) + x·φ(x)
                INDArray phi = Nd4j.exec(new Erf(in.mul(1.0 / Math.sqrt(2.0)))).addi(1.0).muli(0.5);
                INDArray density = Transforms.exp(in.mul(in).muli(-0.5), false).muli(1.0 / Math.sqrt(2 * Math.PI));
                return t(density.muli(in).addi(phi).muli(g));
            }
            case GELU_TANH: {
                // y = x/2·(1 + tanh(u)), u = c·(x + 0.044715·x³)
                double c = Math.sqrt(2.0 / Math.PI);
                INDArray x2 = in.mul(in);
                INDArray th = Transforms.tanh(x2.mul(0.044715).addi(1.0).muli(in).muli(c), false);
                INDArray du = x2.mul(3 * 0.044715).addi(1.0).muli(c);
                INDArray sech2 = th.mul(th).rsubi(1.0);
                INDArray d = th.add(1.0).muli(0.5).addi(in.mul(0.5).muli(sech2).muli(du));
                return t(d.muli(g));
            }
            default:
                throw new IllegalArgumentException("unknown activation " + activation);
        }
    }

    @Override
    public Tensor windowColumnRanges(Tensor x, int seq) {
        if (x.rank() != 2 || x.size(0) % seq != 0) {
            throw new IllegalArgumentException("windowColumnRanges needs [windows·" + seq + ", cols], got " + x.describe());
        }
        INDArray w = a(x).reshape('c', x.size(0) / seq, seq, x.size(1));
        return t(Nd4j.concat(1, w.max(1), w.min(1)));
    }

    @Override
    public Tensor columnSums(Tensor x) {
        if (x.rank() != 2) throw new IllegalArgumentException("columnSums needs a 2-D tensor, got " + x.describe());
        return t(a(x).sum(0).reshape('c', new long[] {x.size(1)}));
    }

    @Override
    public Tensor sumRepeatedHeads(Tensor x, int batch, int kvHeads, int groups) {
        if (groups == 1) return x;
        long seq = x.size(1), d = x.size(2);
        INDArray r = a(x).reshape('c', new long[] {(long) batch * kvHeads, groups, seq * d}).sum(1);
        return t(r.reshape('c', new long[] {(long) batch * kvHeads, seq, d}));
    }

    @Override
    public Tensor scatterAddColumns(Tensor x, int[] columns, int width) {
        int rows = (int) x.size(0), count = (int) x.size(1);
        if (columns.length != count) throw new IllegalArgumentException(columns.length + " columns for " + x.describe());
        float[] in = toFloats(x), out = new float[rows * width];
        for (int r = 0; r < rows; r++) for (int j = 0; j < count; j++) out[r * width + columns[j]] += in[r * count + j];
        return t(out, rows, width);
    }

    @Override
    public Tensor[] scaleShiftLinearBackward(Tensor w, Tensor b, Tensor colScale, Tensor colShift, Tensor rowFactor,
                                             Tensor rowShift, Tensor dW, Tensor dB) {
        float[][] g = io.blockquant.quant.ScaleShift.backward(toFloats(w), (int) w.size(0), (int) w.size(1), orNull(b),
                orNull(colScale), orNull(colShift), orNull(rowFactor), orNull(rowShift), toFloats(dW), orNull(dB));
        return new Tensor[] {vectorOrNull(g[0]), vectorOrNull(g[1]), vectorOrNull(g[2]), vectorOrNull(g[3])};
    }

    @Override
    public Tensor[] fakeQuantizeClippedBackward(Tensor w, Tensor gamma, Tensor beta, int group, int bits, Tensor dOut) {
        int rows = (int) w.size(0), cols = (int) w.size(1);
        float[] dw = new float[rows * cols], dg = new float[(int) gamma.length()], db = new float[(int) beta.length()];
        io.blockquant.quant.ClippedQuantizer.backward(toFloats(w), rows, cols, group, bits, toFloats(gamma), toFloats(beta),
                toFloats(dOut), dw, dg, db);
        return new Tensor[] {t(dw, rows, cols), t(dg, gamma.shape()), t(db, beta.shape())};
    }

    // ---- quantization ----------------------------------------------------------------------------

    @Override
    public Tensor fakeQuantizeClipped(Tensor w, Tensor gamma, Tensor beta, int group, int bits) {
        int rows = (int) w.size(0), cols = (int) w.size(1);
        io.blockquant.quant.ClippedQuantizer.checkShapes(w, gamma, beta, group);
        float[] out = new float[rows * cols];
        io.blockquant.quant.ClippedQuantizer.forward(toFloats(w), rows, cols, group, bits, toFloats(gamma), toFloats(beta),
                out, null, null, null);
        return t(out, rows, cols);
    }

    // ---- in-place updates ------------------------------------------------------------------------

    @Override
    public void adamW(Tensor p, Tensor g, Tensor m, Tensor v, int step, double lr, double beta1, double beta2, double eps,
                      double weightDecay) {
        sameShape("adamW", p, g);
        sameShape("adamW", p, m);
        sameShape("adamW", p, v);
        float[] pv = toFloats(p), gv = toFloats(g), mv = toFloats(m), vv = toFloats(v);
        double c1 = 1 - Math.pow(beta1, step), c2 = 1 - Math.pow(beta2, step);
        for (int i = 0; i < pv.length; i++) {
            double pi = pv[i] * (1 - lr * weightDecay);                       // decoupled weight decay
            double mi = beta1 * mv[i] + (1 - beta1) * gv[i];
            double vi = beta2 * vv[i] + (1 - beta2) * (double) gv[i] * gv[i];
            mv[i] = (float) mi;
            vv[i] = (float) vi;
            pv[i] = (float) (pi - lr * (mi / c1) / (Math.sqrt(vi / c2) + eps)); // bias-corrected Adam step
        }
        overwrite(p, pv);
        overwrite(m, mv);
        overwrite(v, vv);
    }

    @Override
    public void clampAwayFromZero(Tensor x, float min) {
        float[] v = toFloats(x);
        for (int i = 0; i < v.length; i++) if (Math.abs(v[i]) < min) v[i] = v[i] < 0 ? -min : min;
        overwrite(x, v);
    }

    /** Writes {@code values} into the tensor's own buffer (tensors this backend made are contiguous, never views). */
    private static void overwrite(Tensor x, float[] values) {
        INDArray array = a(x);
        if (array.isView() || array.ordering() != 'c' || array.data().length() != array.length()) {
            throw new IllegalArgumentException("in-place update of a view " + x.describe());
        }
        floatView(array).put(values);
    }

    @Override
    public Tensor fakeQuantizeWeight(Tensor w, IntQuantSpec spec) {
        float[] v = toFloats(w);
        IntQuantizer.fakeQuantizeWeight(v, (int) w.size(0), (int) w.size(1), spec);
        return t(v, w.shape());
    }

    @Override
    public Tensor fakeQuantizeTokens(Tensor x, int bits) {
        float[] v = toFloats(x);
        int cols = (int) x.size(-1);
        IntQuantizer.fakeQuantizeTokens(v, (int) (v.length / cols), cols, bits);
        return t(v, x.shape());
    }

    @Override
    public Tensor fakeQuantizeTokensAsym(Tensor x, int bits) {
        float[] v = toFloats(x);
        int cols = (int) x.size(-1);
        IntQuantizer.fakeQuantizeTokensAsym(v, (int) (v.length / cols), cols, bits);
        return t(v, x.shape());
    }

    @Override
    public Tensor fakeQuantizeTokensFp(Tensor x, io.blockquant.quant.FpFormat format) {
        float[] v = toFloats(x);
        int cols = (int) x.size(-1);
        io.blockquant.quant.FpQuantizer.fakeQuantizeTokens(v, (int) (v.length / cols), cols, format);
        return t(v, x.shape());
    }

    @Override
    public Tensor fakeQuantizeTokensBackward(Tensor x, Tensor dy, io.blockquant.quant.TokenQuant q) {
        if (q == null) return dy;
        float[] v = toFloats(x), d = toFloats(dy), dx = new float[v.length];
        int cols = (int) x.size(-1);
        io.blockquant.quant.TokenQuantBackward.backward(v, d, v.length / cols, cols, q, dx);
        return t(dx, x.shape());
    }

    // ---- linear algebra --------------------------------------------------------------------------

    @Override
    public Tensor cholesky(Tensor m) {
        INDArray copy = a(m).dup('f');
        try {
            Nd4j.getBlasWrapper().lapack().potrf(copy, true);
        } catch (org.nd4j.linalg.api.blas.BlasException e) {
            // ND4J reports LAPACK's info > 0 (a non-positive leading minor) as a java.lang.Error
            throw new ArithmeticException("cholesky: the " + m.describe() + " matrix is not positive definite ("
                    + e.getMessage() + ")");
        }
        // potrf leaves the strict upper triangle untouched: clear it
        int n = (int) m.size(0);
        float[] l = toFloats(t(copy));
        for (int i = 0; i < n; i++) for (int j = i + 1; j < n; j++) l[i * n + j] = 0f;
        return t(l, n, n);
    }

    // LAPACK/BLAS in float64 through OpenBLAS directly: ND4J 1.0.0-M2.1's trsm wrapper hands BLAS an illegal
    // TRANSA argument (measured: "On entry to STRSM parameter number 4 had an illegal value").

    @Override
    public Tensor solveTriangular(Tensor tri, Tensor b, boolean lower) {
        int n = (int) tri.size(0), m = (int) b.size(1);
        if (tri.size(1) != n || b.size(0) != n) {
            throw new IllegalArgumentException("solveTriangular: " + tri.describe() + " and " + b.describe() + " do not fit");
        }
        double[] td = toDoubles(tri);
        float[] rhs = toFloats(b);
        double[] x = new double[rhs.length];
        for (int i = 0; i < rhs.length; i++) x[i] = rhs[i];
        openblas.cblas_dtrsm(openblas.CblasRowMajor, openblas.CblasLeft, lower ? openblas.CblasLower : openblas.CblasUpper,
                openblas.CblasNoTrans, openblas.CblasNonUnit, n, m, 1.0, td, n, x, m);
        return t(toFloat(x), n, m);
    }

    /** dtrtri: n³/3 flops and no identity matrix (GPTQ's L⁻¹ of a 28672-wide Hessian: 3.3 GB saved). */
    @Override
    public Tensor invertTriangular(Tensor tri, boolean lower) {
        int n = (int) tri.size(0);
        if (tri.size(1) != n) throw new IllegalArgumentException("invertTriangular: " + tri.describe() + " is not square");
        double[] td = toDoubles(tri);
        // dtrtri leaves the other triangle as it was, and it is part of the result: clear it
        for (int i = 0; i < n; i++) for (int j = 0; j < n; j++) if (lower ? j > i : j < i) td[i * n + j] = 0;
        int info = openblas.LAPACKE_dtrtri(openblas.LAPACK_ROW_MAJOR, (byte) (lower ? 'L' : 'U'), (byte) 'N', n, td, n);
        if (info != 0) throw new ArithmeticException("invertTriangular: the " + tri.describe() + " matrix is singular (LAPACK dtrtri info " + info + ")");
        return t(toFloat(td), n, n);
    }

    private double[] toDoubles(Tensor t) {
        float[] f = toFloats(t);
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) d[i] = f[i];
        return d;
    }

    private static float[] toFloat(double[] d) {
        float[] out = new float[d.length];
        for (int i = 0; i < d.length; i++) out[i] = (float) d[i];
        return out;
    }

    @Override
    public Tensor[] svd(Tensor m) {
        int rows = (int) m.size(0), cols = (int) m.size(1), k = Math.min(rows, cols);
        INDArray copy = a(m).dup('f');
        INDArray s = Nd4j.create(DataType.FLOAT, k);
        INDArray u = Nd4j.create(DataType.FLOAT, new long[] {rows, rows}, 'f');
        INDArray vt = Nd4j.create(DataType.FLOAT, new long[] {cols, cols}, 'f');
        Nd4j.getBlasWrapper().lapack().gesvd(copy, s, u, vt);
        Tensor uk = t(u.get(org.nd4j.linalg.indexing.NDArrayIndex.all(), org.nd4j.linalg.indexing.NDArrayIndex.interval(0, k)));
        Tensor vk = t(vt.get(org.nd4j.linalg.indexing.NDArrayIndex.interval(0, k), org.nd4j.linalg.indexing.NDArrayIndex.all()).transpose());
        return new Tensor[] {uk, t(s), vk};
    }
}
