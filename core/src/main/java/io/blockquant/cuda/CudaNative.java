package io.blockquant.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The JNI entry points of {@code libblockquant_cuda.so} (built from {@code core/src/main/native} by the
 * {@code -Pcuda} profile or {@code cluster/gpu/build-native.sh}). Device memory is addressed by raw pointers
 * ({@code long}); every call works on the calling thread's stream and cuBLAS/cuSOLVER handles for the device
 * it was last {@link #bind bound} to. Matrices are row-major float32 unless a name says otherwise.
 *
 * <p>The library is found, in this order: the path in {@code -Dblockquant.cuda.lib}, the copy inside the job
 * jar ({@code native/linux-x86_64/libblockquant_cuda.so}), {@code java.library.path}.
 */
final class CudaNative {

    private CudaNative() {}

    static final String RESOURCE = "/native/linux-x86_64/libblockquant_cuda.so";

    private static final String LOAD_ERROR = load();

    /** Null when the library is loaded; otherwise why not. */
    static String loadError() {
        return LOAD_ERROR;
    }

    private static String load() {
        try {
            String explicit = System.getProperty("blockquant.cuda.lib");
            if (explicit != null && !explicit.isEmpty()) {
                System.load(Path.of(explicit).toAbsolutePath().toString());
                return null;
            }
            try (InputStream in = CudaNative.class.getResourceAsStream(RESOURCE)) {
                if (in != null) {
                    // a shared library cannot be loaded from inside a jar: copy it out once per JVM
                    Path tmp = Files.createTempFile("blockquant_cuda", ".so");
                    Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                    tmp.toFile().deleteOnExit();
                    System.load(tmp.toString());
                    return null;
                }
            }
            System.loadLibrary("blockquant_cuda");
            return null;
        } catch (UnsatisfiedLinkError | IOException | SecurityException e) {
            return "libblockquant_cuda.so not loaded: " + e.getMessage();
        }
    }

    // ---- devices and threads ---------------------------------------------------------------------
    static native int deviceCount();

    static native String deviceName(int device);

    /** cudaSetDevice for this thread, and this thread's stream and library handles on that device. */
    static native void bind(int device);

    /**
     * Gives this thread's contexts (stream and handles, per device) back to the device's pool for the next
     * thread that binds; the thread binds again before its next operation.
     */
    static native void releaseThread();

    /** This thread's stream on its bound device, as a handle for {@link #free}. */
    static native long stream();

    static native void synchronize();

    /** Lets cuBLAS use TF32 tensor cores for float32 products (off by default: exact float32). */
    static native void setTf32(boolean on);

    /** {free, total} bytes of the bound device. */
    static native long[] memoryInfo();

    // ---- memory ----------------------------------------------------------------------------------
    /** Stream-ordered allocation from the device's memory pool (cudaMallocAsync). */
    static native long alloc(long bytes);

    /** Frees on the stream that allocated it, on any thread (cudaFreeAsync). */
    static native void free(int device, long ptr, long stream);

    static native void upload(long dst, float[] src, int offset, int count);

    static native void download(long src, float[] dst, int offset, int count);

    /** {@code bytes} from device address {@code src} into direct buffer {@code dst} at byte {@code offset}; waits for the copy. */
    static native void downloadBytes(long src, java.nio.ByteBuffer dst, long offset, long bytes);

    static native void fillZero(long ptr, long bytes);

    static native void copy(long dst, long src, long bytes);

    /** cudaMemcpy2D in float elements: {@code height} rows of {@code width} floats. */
    static native void copy2d(long dst, long dstPitch, long src, long srcPitch, long width, long height);

    // ---- layout ----------------------------------------------------------------------------------
    static native void transpose(long src, long dst, int rows, int cols);

    static native void gatherRows(long table, long tableRows, int width, int[] rows, long out);

    static native void selectColumns(long in, int rows, int cols, int[] columns, long out);

    /** {@code [a, b, c, d] -> [a, c, b, d]}: splitHeads (b = seq, c = heads) and mergeHeads (b = heads, c = seq). */
    static native void permute0213(long in, int a, int b, int c, int d, long out);

    /** repeat: {@code out[(i·groups + g)·per + e] = in[i·per + e]}; sum (backward): the reverse, summed. */
    static native void repeatHeads(long in, long n, int groups, long per, boolean sum, long out);

    // ---- products --------------------------------------------------------------------------------
    static native void gemm(boolean transA, boolean transB, int m, int n, int k, long a, long b, long c);

    static native void gemmBatched(boolean transA, boolean transB, int m, int n, int k, int batch, long a, long b, long c);

    /** {@code c += op(a)·op(b)} (row-major, like {@link #gemm}). */
    static native void gemmAccumulate(boolean transA, boolean transB, int m, int n, int k, long a, long b, long c);

    // ---- element-wise ----------------------------------------------------------------------------
    static final int ADD = 0, SUB = 1, MUL = 2, DIV = 3;

    static native void binary(int op, long a, long b, long out, long n);

    static native void scale(long a, float factor, long out, long n);

    /** op ADD or MUL of a row vector onto every row. */
    static native void rowVector(int op, long a, long row, long out, long rows, int cols);

    /** activation by {@code Activation.ordinal()}. */
    static native void activate(int activation, long x, long out, long n);

    static native void activationBackward(int activation, long x, long dy, long out, long n);

    static native void gatedActivation(int activation, long gate, long up, long out, long n);

    static native void gatedActivationBackward(int activation, long gate, long up, long dy, long dGate, long dUp, long n);

    // ---- reductions ------------------------------------------------------------------------------
    static native double sum(long a, long n, boolean squares);

    static native void rowLogSumExp(long a, int rows, int cols, double[] out);

    static native void pickPerRow(long a, int rows, int cols, int[] columns, float[] out);

    static native void rowAbsMax(long a, int rows, int cols, long out);

    static native void windowColumnRanges(long a, int windows, int seq, int cols, long out);

    static native void columnSums(long a, int rows, int cols, long out);

    // ---- normalization and attention -------------------------------------------------------------
    static native void rmsNorm(long x, long w, float eps, int rows, int cols, long out);

    /** bias 0: none. */
    static native void layerNorm(long x, long w, long bias, float eps, int rows, int cols, long out);

    static native void rmsNormBackward(long x, long w, float eps, long dy, int rows, int cols, long dx, long dw);

    static native void layerNormBackward(long x, long w, float eps, long dy, int rows, int cols, long dx, long dw, long db);

    /** RoPE over {@code [n, seq, d]} with angles {@code sign·pos·invFreq[i]}. */
    static native void rope(long x, int n, int seq, int d, float[] invFreq, float sign, long out);

    static native void causalSoftmax(long scores, int n, int seq, float scale, long out);

    static native void causalSoftmaxBackward(long probs, long dProbs, long rows, int seq, float scale, long out);

    // ---- quantization ----------------------------------------------------------------------------
    static native void fakeQuantizeWeight(long w, int rows, int cols, int group, int bits, boolean symmetric, long out);

    static native void fakeQuantizeTokens(long x, int rows, int cols, int bits, long out);

    /** Asymmetric per-token (per-row) min-max fake quantization, the OmniQuant reference's activation rule. */
    static native void fakeQuantizeTokensAsym(long x, int rows, int cols, int bits, long out);

    static native void fakeQuantizeTokensFp(long x, int rows, int cols, int mantissaBits, int bias, int maxCode,
                                            float maxValue, long out);

    /** Backward of the three per-token rules (rule 0 symmetric INT, 1 asymmetric INT, 2 FP), as quant/TokenQuantBackward. */
    static native void fakeQuantizeTokensBackward(long x, long dy, int rows, int cols, int rule, int bits, int mantissaBits, int bias,
                                                  int maxCode, float maxValue, long dx);

    // ---- linear algebra --------------------------------------------------------------------------
    /** Lower Cholesky factor into {@code out}; returns cuSOLVER's info (0: success, i > 0: minor i not positive). */
    static native int cholesky(long a, int n, long out);

    /** {@code T·X = B}, T {@code [n, n]}, B {@code [n, m]}, solved in float64. */
    static native void solveTriangular(long t, long b, int n, int m, boolean lower, long out);

    /** Thin SVD of {@code [m, n]}: U {@code [m, k]}, S {@code [k]}, V {@code [n, k]}; returns cuSOLVER's info. */
    static native int svd(long a, int m, int n, long u, long s, long v);

    /** In place on {@code [n, n]}: {@code a = f·a}, then {@code a[i, i] += d[i]}. */
    static native void scaleAddDiagonal(long a, int n, float f, float[] d);

    /** GPTQ's integer column loop on W and U on the device, W updated in place; returns the loss. */
    static native double gptqIntDevice(long w, int rows, int cols, long hinvUpper, int blockSize, int group, int bits,
                                       boolean symmetric, int[] levels, float[] scales, float[] zeros);

    /** GPTQ's integer column loop on the device ({@link CudaBackend#gptqIntColumns}); returns the loss. */
    static native double gptqInt(float[] w, int rows, int cols, float[] hinvUpper, int blockSize, int group, int bits,
                                 boolean symmetric, int[] levels, float[] scales, float[] zeros);

    // ---- block-wise training (OmniQuant) ---------------------------------------------------------
    /** Pointers of 0 stand for absent (null) tensors. */
    static native void reciprocal(long a, long out, long n);

    /** {@code out [rows, width]}, {@code out[r, columns[j]] += x[r, j]} over x {@code [rows, columns.length]}. */
    static native void scatterAddColumns(long x, int rows, int[] columns, int width, long out);

    /** LET on a linear: {@code w2 = diag(rowFactor)·w·diag(colScale)}, {@code b2 = rowFactor⊙(b + w·colShift − rowShift)} (b2 0: none). */
    static native void scaleShiftLinear(long w, int rows, int cols, long b, long colScale, long colShift, long rowFactor,
                                        long rowShift, long w2, long b2);

    static native void scaleShiftLinearBackward(long w, int rows, int cols, long b, long colScale, long colShift,
                                                long rowFactor, long rowShift, long dW, long dB, long dColScale,
                                                long dColShift, long dRowFactor, long dRowShift);

    /** LWC's clipped fake quantizer (OmniQuant eq. 2–3), γ and β per (row, group). */
    static native void fakeQuantizeClipped(long w, int rows, int cols, int group, int bits, long gamma, long beta, long out);

    static native void fakeQuantizeClippedBackward(long w, int rows, int cols, int group, int bits, long gamma, long beta,
                                                   long dOut, long dW, long dGamma, long dBeta);

    /** AdamW in place on p, m, v; {@code c1 = 1 − β1^t}, {@code c2 = 1 − β2^t}. */
    static native void adamW(long p, long g, long m, long v, long n, double lr, double beta1, double beta2, double eps,
                             double weightDecay, double c1, double c2);

    static native void clampAwayFromZero(long a, long n, float min);
}
