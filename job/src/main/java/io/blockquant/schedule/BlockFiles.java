package io.blockquant.schedule;

import io.blockquant.algo.GptqQuantizer;
import io.blockquant.algo.HessianAccumulator;
import io.blockquant.algo.StoredWeight;
import io.blockquant.store.TensorRecord;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * What a block's tasks hand to each other through the store's work area instead of through the driver:
 * partial Hessians of a true-sequential group (one per calibration partition), the group's prepared Hessian,
 * each quantized layer, and a calibrated block's store rows. At real sizes these are the large objects (a
 * Llama-3-8B down_proj Hessian is 1.6 GB in float64, a block's rows 0.2–3 GB): the driver only learns that
 * they exist. Layout under {@code STORE/_work/block-0003/}:
 * {@code hessian/<module>/part-00007}, {@code hessian/<module>/prepared}, {@code layers/<module>}, {@code rows}.
 */
public record BlockFiles(String workDir) implements Serializable {

    Path blockDir(int block) {
        return new Path(workDir, String.format("block-%04d", block));
    }

    /** Partial sum {@code slice} of {@code module}'s input Hessian (the partitions one task folded). */
    public void writePartialHessian(Configuration conf, int block, String module, int slice, HessianAccumulator h) throws IOException {
        write(conf, new Path(blockDir(block), String.format("hessian/%s/part-%05d", module, slice)), h);
    }

    /**
     * The Hessian of {@code module}'s input: the partial sums of {@code partitions} (slices) added in that order
     * (the same float64 sum every run), then damped and factored.
     */
    public GptqQuantizer.PreparedHessian prepareHessian(Configuration conf, int block, String module, List<Integer> partitions,
                                                        java.util.function.Function<io.blockquant.tensor.GramSum, GptqQuantizer.PreparedHessian> prepare) throws IOException {
        HessianAccumulator acc = null;
        for (int p : partitions) {
            HessianAccumulator part = (HessianAccumulator) read(conf, new Path(blockDir(block), String.format("hessian/%s/part-%05d", module, p)));
            if (acc == null) acc = part;
            else acc.add(part);
        }
        GptqQuantizer.PreparedHessian prepared = prepare.apply(acc);
        write(conf, new Path(blockDir(block), "hessian/" + module + "/prepared"), prepared);
        prepared.release(); // the layer tasks read the factor from the file
        // the partials are the large part of the work area (partitions × n² × 8 bytes): gone once summed
        for (int p : partitions) delete(conf, new Path(blockDir(block), String.format("hessian/%s/part-%05d", module, p)));
        return prepared;
    }

    public GptqQuantizer.PreparedHessian preparedHessian(Configuration conf, int block, String module) throws IOException {
        return (GptqQuantizer.PreparedHessian) read(conf, new Path(blockDir(block), "hessian/" + module + "/prepared"));
    }

    public void deleteHessian(Configuration conf, int block) throws IOException {
        delete(conf, new Path(blockDir(block), "hessian"));
    }

    public void writeLayer(Configuration conf, int block, String module, StoredWeight w) throws IOException {
        write(conf, new Path(blockDir(block), "layers/" + module), w);
    }

    /** The quantized layers of {@code block} among {@code modules}, in that order (those not written yet left out). */
    public Map<String, StoredWeight> readLayers(Configuration conf, int block, List<String> modules) throws IOException {
        Map<String, StoredWeight> out = new LinkedHashMap<>();
        for (String m : modules) {
            Path p = new Path(blockDir(block), "layers/" + m);
            if (p.getFileSystem(conf).exists(p)) out.put(m, (StoredWeight) read(conf, p));
        }
        return out;
    }

    public void writeRows(Configuration conf, int block, List<TensorRecord> rows) throws IOException {
        write(conf, new Path(blockDir(block), "rows"), new ArrayList<>(rows));
    }

    @SuppressWarnings("unchecked")
    public List<TensorRecord> readRows(Configuration conf, int block) throws IOException {
        return (List<TensorRecord>) read(conf, new Path(blockDir(block), "rows"));
    }

    public void deleteBlock(Configuration conf, int block) throws IOException {
        delete(conf, blockDir(block));
    }

    /** Written under a name of this attempt's own, then renamed: a reader sees a whole file or none. */
    private static void write(Configuration conf, Path p, Object value) throws IOException {
        FileSystem fs = p.getFileSystem(conf);
        Path tmp = new Path(p.getParent(), "." + p.getName() + "." + ActivationFiles.attemptName() + "-" + UUID.randomUUID() + ".tmp");
        try {
            fs.mkdirs(p.getParent()); // before the create: tasks writing into one new folder at once race on it otherwise
            try (ObjectOutputStream out = new ObjectOutputStream(new BufferedOutputStream(fs.create(tmp, true), 1 << 20))) {
                out.writeObject(value);
            }
            io.blockquant.model.RenameOver.move(fs, tmp, p);
        } catch (IOException e) {
            try {
                fs.delete(tmp, false);
            } catch (IOException ignored) {
                // the write error is the one to report
            }
            throw new IOException(p + ": cannot write (" + e.getMessage() + ")", e);
        }
    }

    private static Object read(Configuration conf, Path p) throws IOException {
        try (ObjectInputStream in = new ObjectInputStream(new BufferedInputStream(p.getFileSystem(conf).open(p), 1 << 20))) {
            return in.readObject();
        } catch (ClassNotFoundException e) {
            throw new IOException(p + ": " + e.getMessage(), e);
        }
    }

    private static void delete(Configuration conf, Path p) throws IOException {
        p.getFileSystem(conf).delete(p, true);
    }
}
