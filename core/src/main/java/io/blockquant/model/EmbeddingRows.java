package io.blockquant.model;

import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * The token embedding's rows for a batch's ids, from a table read by rows (never whole): each distinct id
 * is read once, a run of consecutive ids in one read. The floats are the table's, as a whole-table gather
 * would give them.
 */
public final class EmbeddingRows {

    private EmbeddingRows() {}

    /** {@code [ids.length, width]}, row k holding row {@code ids[k]} of {@code table}. */
    public static float[] gather(TensorRows table, int[] ids) {
        int width = Math.toIntExact(table.cols());
        int[] distinct = IntStream.of(ids).distinct().sorted().toArray();
        if (distinct.length > 0 && (distinct[0] < 0 || distinct[distinct.length - 1] >= table.rows())) {
            int bad = distinct[0] < 0 ? distinct[0] : distinct[distinct.length - 1];
            throw new IllegalArgumentException("token id " + bad + " outside the " + table.rows() + " rows of " + table.name());
        }
        float[] rows = new float[Math.multiplyExact(distinct.length, width)];
        for (int i = 0; i < distinct.length; ) {
            int j = i + 1;
            while (j < distinct.length && distinct[j] == distinct[j - 1] + 1) j++;
            float[] run = table.readRows(distinct[i], j - i);
            System.arraycopy(run, 0, rows, i * width, run.length);
            i = j;
        }
        float[] out = new float[Math.multiplyExact(ids.length, width)];
        for (int k = 0; k < ids.length; k++) {
            System.arraycopy(rows, Arrays.binarySearch(distinct, ids[k]) * width, out, k * width, width);
        }
        return out;
    }
}
