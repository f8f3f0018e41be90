package io.blockquant.schedule;

import io.blockquant.model.DType;
import io.blockquant.model.SafetensorsFile;
import io.blockquant.model.SafetensorsWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

/**
 * OmniQuant's learned parameters of each block, one safetensors file per block ({@code block-N.safetensors},
 * float32 vectors named as {@link io.blockquant.algo.omniquant.OmniQuantObjective#learned}): the reference's
 * {@code omni_parameters.pth} and its {@code --resume}. A block whose file exists is folded from it without
 * training; a block trained here gets its file written (atomically), so a later run, or a store built from
 * parameters learned on another machine, folds the same block.
 */
public final class OmniQuantParameterFiles {

    private OmniQuantParameterFiles() {}

    public static Path file(String dir, int block) {
        return new Path(dir, "block-" + block + ".safetensors");
    }

    private static boolean exists(Configuration conf, String dir, int block) {
        Path path = file(dir, block);
        try {
            return path.getFileSystem(conf).exists(path);
        } catch (IOException e) {
            throw new UncheckedIOException("reading OmniQuant parameters " + path + ": " + e.getMessage(), e);
        }
    }

    /** The blocks among {@code 0..blocks-1} whose file exists in {@code dir} (none when {@code dir} is null). */
    public static java.util.Set<Integer> blocksIn(Configuration conf, String dir, int blocks) {
        java.util.Set<Integer> out = new java.util.TreeSet<>();
        if (dir == null) return out;
        for (int b = 0; b < blocks; b++) if (exists(conf, dir, b)) out.add(b);
        return out;
    }

    /** The block's learned parameters, or null when its file does not exist. */
    public static Map<String, float[]> read(Configuration conf, String dir, int block) {
        Path path = file(dir, block);
        try {
            FileSystem fs = path.getFileSystem(conf);
            if (!fs.exists(path)) return null;
            Map<String, float[]> out = new LinkedHashMap<>();
            try (SafetensorsFile f = SafetensorsFile.open(fs, path)) {
                for (String name : f.entries().keySet()) out.put(name, f.readFloats(name));
            }
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("reading OmniQuant parameters " + path + ": " + e.getMessage(), e);
        }
    }

    public static void write(Configuration conf, String dir, int block, Map<String, float[]> learned) {
        Path path = file(dir, block);
        List<SafetensorsWriter.Tensor> tensors = new ArrayList<>();
        learned.forEach((name, v) -> tensors.add(SafetensorsWriter.Tensor.floats(name, DType.F32, v, v.length)));
        try {
            FileSystem fs = path.getFileSystem(conf);
            fs.mkdirs(path.getParent());
            SafetensorsWriter.write(fs, path, tensors, Map.of("format", "blockquant-omniquant-parameters", "block", String.valueOf(block)));
        } catch (IOException e) {
            throw new UncheckedIOException("writing OmniQuant parameters " + path + ": " + e.getMessage(), e);
        }
    }
}
