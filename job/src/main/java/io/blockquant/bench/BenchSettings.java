package io.blockquant.bench;

/**
 * How every section of one benchmark run measures: {@code warmups} untimed runs, then {@code repeats} timed
 * ones (the median is reported), on {@code threads} BLAS threads; {@code quick} divides the 7B shapes by 8
 * for a smoke run of seconds.
 */
public record BenchSettings(int warmups, int repeats, int threads, boolean quick) {

    public BenchSettings {
        if (repeats < 1 || warmups < 0 || threads < 1) {
            throw new IllegalArgumentException("--repeats and --threads must be ≥ 1, --warmups ≥ 0");
        }
    }

    /** What the 7B shapes are divided by. */
    public int shrink() {
        return quick ? 8 : 1;
    }
}
