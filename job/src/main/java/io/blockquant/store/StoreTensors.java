package io.blockquant.store;

import io.blockquant.model.ModelFormatException;
import io.blockquant.model.TensorRows;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.parquet.HadoopReadOptions;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.filter2.compat.FilterCompat;
import org.apache.parquet.filter2.predicate.FilterApi;
import org.apache.parquet.filter2.predicate.FilterPredicate;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.ParquetReader;
import org.apache.parquet.hadoop.api.ReadSupport;
import org.apache.parquet.hadoop.example.GroupReadSupport;
import org.apache.parquet.hadoop.util.HadoopInputFile;
import org.apache.parquet.io.InputFile;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.Type;

/**
 * Reads a committed block's tensors straight from the store's Parquet files, without a SparkSession: what
 * an executor task does (eval, export, a later pass) so that no tensor travels through the driver. Split
 * tensors ({@link TensorRecord#part}) are joined here, or read by rows ({@link #rows}) when they are too
 * large to join. Every value's checksum is verified.
 */
public final class StoreTensors {

    private StoreTensors() {}

    /** The metadata of one stored value (no data): enough to plan an export or a read. */
    public record Info(String module, String kind, String dtype, long[] shape, int bits, int groupSize,
                       String format, long bytes, int part) implements java.io.Serializable {}

    /** Every tensor of {@code block}, parts joined, ordered by module then kind. */
    public static List<TensorRecord> read(Configuration conf, Path root, int block) {
        return join(scan(conf, root, block, null, true), blockDir(root, block));
    }

    /** One tensor of {@code block} (parts joined); a {@link ModelFormatException} names it when it is missing. */
    public static TensorRecord read(Configuration conf, Path root, int block, String module, String kind) {
        for (TensorRecord t : join(scan(conf, root, block, module, true), blockDir(root, block))) {
            if (t.kind().equals(kind)) return t;
        }
        throw new ModelFormatException(blockDir(root, block) + ": no tensor module " + module + " kind " + kind);
    }

    /** Every tensor of one kind ({@code zeros}) in {@code block}, parts joined: a filtered read, not the whole block. */
    public static List<TensorRecord> readKind(Configuration conf, Path root, int block, String kind) {
        return join(scan(conf, root, block, FilterApi.eq(FilterApi.binaryColumn("kind"), Binary.fromString(kind)), true), blockDir(root, block));
    }

    /** The metadata of every value of {@code block} (one per part), without reading tensor data. */
    public static List<Info> list(Configuration conf, Path root, int block) {
        List<Info> out = new ArrayList<>();
        for (Object o : scan(conf, root, block, null, false)) out.add((Info) o);
        out.sort(Comparator.comparing(Info::module).thenComparing(Info::kind).thenComparingInt(Info::part));
        return out;
    }

    /**
     * A full-precision 2-D tensor of {@code block} read by rows, one part at a time (the embedding or head of
     * a real model: 1–4 GB, never joined).
     */
    public static TensorRows rows(Configuration conf, Path root, int block, String module, String kind) {
        Path dir = blockDir(root, block);
        List<Info> parts = new ArrayList<>();
        for (Info i : list(conf, root, block)) if (i.module().equals(module) && i.kind().equals(kind)) parts.add(i);
        if (parts.isEmpty()) throw new ModelFormatException(dir + ": no tensor module " + module + " kind " + kind);
        Info first = parts.get(0);
        int width = TensorRecord.elementBytes(first.dtype());
        if (first.shape().length != 2 || width == 0) {
            throw new ModelFormatException(dir + ": module " + module + " kind " + kind + " is " + first.dtype()
                    + " of shape " + java.util.Arrays.toString(first.shape()) + ", expected a 2-D float matrix");
        }
        long rows = first.shape()[0], cols = first.shape()[1];
        // rows per part from what part 0 holds, not from today's PART_BYTES: a store written with another bound reads the same
        long perPart = Math.max(1, first.bytes() / Math.max(1, (long) width * cols));
        String name = dir + ": module " + module;
        return new TensorRows() {
            private int cachedPart = -1;
            private float[] cached;

            public String name() { return name; }
            public long rows() { return rows; }
            public long cols() { return cols; }

            public synchronized float[] readRows(long from, int count) {
                if (from < 0 || count < 0 || from + count > rows) {
                    throw new IllegalArgumentException(name + ": rows " + from + "+" + count + " outside 0.." + rows);
                }
                float[] out = new float[Math.toIntExact((long) count * cols)];
                long r = from;
                while (r < from + count) {
                    int part = (int) (r / perPart);
                    if (part != cachedPart) {
                        TensorRecord t = readPart(part);
                        cached = t.toFloats();
                        cachedPart = part;
                    }
                    long partStart = (long) part * perPart;
                    long upto = Math.min(from + count, partStart + cached.length / cols);
                    System.arraycopy(cached, (int) ((r - partStart) * cols), out, (int) ((r - from) * cols), (int) ((upto - r) * cols));
                    r = upto;
                }
                return out;
            }

            private Located located;

            private TensorRecord readPart(int part) {
                if (located == null) located = locate(conf, root, block);
                return located.part(module, kind, part);
            }
        };
    }

    /**
     * Part {@code part} of one tensor of {@code block} as stored (its slice of rows, in the stored dtype),
     * checksum verified: how a tensor too large to join is copied one bounded value at a time.
     */
    public static TensorRecord part(Configuration conf, Path root, int block, String module, String kind, int part) {
        return pick(scan(conf, root, block, partFilter(module, part), true), root, block, module, kind, part);
    }

    /**
     * Where each value of {@code block} is stored, from one metadata listing: then each part is read from the one
     * file that holds it ({@link Located#part}), where {@link #part} opens every file of the block — a block of
     * k parts in k files read part by part would open k² files.
     */
    public static Located locate(Configuration conf, Path root, int block) {
        Map<String, Path> files = new HashMap<>();
        try {
            for (Path f : files(conf, root, block)) {
                for (Object o : scanFile(conf, f, block, null, false)) {
                    Info i = (Info) o;
                    files.put(partKey(i.module(), i.kind(), i.part()), f);
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(blockDir(root, block) + ": cannot read the stored tensors (" + e.getMessage() + ")", e);
        }
        return new Located(conf, root, block, files);
    }

    /** The values of {@code block} in store {@code root} by the file that holds each (keyed by module, kind, part): see {@link #locate}. */
    public record Located(Configuration conf, Path root, int block, Map<String, Path> files) {

        /** As {@link StoreTensors#part}, reading only the file that holds the part. */
        public TensorRecord part(String module, String kind, int part) {
            Path f = files.get(partKey(module, kind, part));
            if (f == null) return pick(List.of(), root, block, module, kind, part);
            try {
                return pick(scanFile(conf, f, block, partFilter(module, part), true), root, block, module, kind, part);
            } catch (IOException e) {
                throw new UncheckedIOException(f + ": cannot read the stored tensors (" + e.getMessage() + ")", e);
            }
        }
    }

    private static String partKey(String module, String kind, int part) {
        return module + "\u0000" + kind + "\u0000" + part;
    }

    /** Rows of one module's part {@code part}. */
    private static FilterPredicate partFilter(String module, int part) {
        // format 1 has no part column (read as null): its tensors are whole, part 0
        FilterPredicate isPart = part == 0
                ? FilterApi.or(FilterApi.eq(FilterApi.intColumn("part"), 0), FilterApi.eq(FilterApi.intColumn("part"), (Integer) null))
                : FilterApi.eq(FilterApi.intColumn("part"), part);
        return FilterApi.and(FilterApi.eq(FilterApi.binaryColumn("module"), Binary.fromString(module)), isPart);
    }

    private static TensorRecord pick(List<Object> values, Path root, int block, String module, String kind, int part) {
        for (Object o : values) {
            TensorRecord t = (TensorRecord) o;
            if (t.kind().equals(kind) && t.part() == part) return t;
        }
        throw new ModelFormatException(blockDir(root, block) + ": module " + module + " kind " + kind + ": part " + part + " is missing");
    }

    static Path blockDir(Path root, int block) {
        return StoreLayout.blockDir(root, StoreLayout.TENSORS, block);
    }

    /** Parts of the same tensor joined in order; a gap or a wrong byte count is a corrupt store. */
    static List<TensorRecord> join(List<Object> values, Path where) {
        Map<String, List<TensorRecord>> byTensor = new LinkedHashMap<>();
        for (Object o : values) {
            TensorRecord t = (TensorRecord) o;
            byTensor.computeIfAbsent(t.module() + "\u0000" + t.kind(), k -> new ArrayList<>()).add(t);
        }
        List<TensorRecord> out = new ArrayList<>();
        for (List<TensorRecord> parts : byTensor.values()) out.add(joinParts(parts, where));
        out.sort(Comparator.comparing(TensorRecord::module).thenComparing(TensorRecord::kind));
        return out;
    }

    static TensorRecord joinParts(List<TensorRecord> parts, Path where) {
        parts.sort(Comparator.comparingInt(TensorRecord::part));
        TensorRecord first = parts.get(0);
        for (int i = 0; i < parts.size(); i++) {
            if (parts.get(i).part() != i) {
                throw new ModelFormatException(where + ": " + first.describe() + ": part " + i + " is missing (found parts "
                        + parts.stream().map(TensorRecord::part).toList() + ")");
            }
        }
        if (parts.size() == 1) return first;
        long total = 0;
        for (TensorRecord t : parts) total += t.data().length;
        if (total > Integer.MAX_VALUE - 8) {
            throw new ModelFormatException(where + ": " + first.describe() + " is " + total
                    + " bytes, too large to join into one value; read it by rows");
        }
        byte[] data = new byte[(int) total];
        int at = 0;
        for (TensorRecord t : parts) {
            System.arraycopy(t.data(), 0, data, at, t.data().length);
            at += t.data().length;
        }
        return new TensorRecord(first.block(), first.module(), first.kind(), first.dtype(), first.shape(), first.bits(),
                first.groupSize(), first.format(), data, TensorRecord.crc32c(data));
    }

    /** Reads the Parquet files of a block: TensorRecords (verified) when {@code data}, else {@link Info}s. */
    private static List<Object> scan(Configuration conf, Path root, int block, Object filter, boolean data) {
        Path dir = blockDir(root, block);
        List<Object> out = new ArrayList<>();
        try {
            FilterPredicate predicate = filter instanceof FilterPredicate p ? p
                    : filter instanceof String module ? FilterApi.eq(FilterApi.binaryColumn("module"), Binary.fromString(module)) : null;
            for (Path f : files(conf, root, block)) out.addAll(scanFile(conf, f, block, predicate, data));
        } catch (IOException e) {
            throw new UncheckedIOException(dir + ": cannot read the stored tensors (" + e.getMessage() + ")", e);
        }
        return out;
    }

    /** The Parquet files of a block. */
    private static List<Path> files(Configuration conf, Path root, int block) throws IOException {
        Path dir = blockDir(root, block);
        FileSystem fs = dir.getFileSystem(conf);
        if (!fs.exists(dir)) throw new ModelFormatException(dir + ": block " + block + " is not in the model store");
        List<Path> files = new ArrayList<>();
        for (FileStatus f : fs.listStatus(dir)) {
            String n = f.getPath().getName();
            if (n.endsWith(".parquet") && !n.startsWith(".") && !n.startsWith("_")) files.add(f.getPath());
        }
        return files;
    }

    /** One Parquet file of a block, its rows passing {@code predicate} (all when null). */
    private static List<Object> scanFile(Configuration conf, Path file, int block, FilterPredicate predicate, boolean data) throws IOException {
        Path dir = file.getParent();
        List<Object> out = new ArrayList<>();
        Configuration c = new Configuration(conf);
        if (!data) c.set(ReadSupport.PARQUET_READ_SCHEMA, metadataSchema(conf, file).toString());
        // built from an InputFile with our configuration: ParquetReader.builder(support, path) makes a fresh
        // Configuration that parses Hadoop's default XML files, per file read (most of an export's time once)
        ParquetReader.Builder<Group> b = new GroupReader(HadoopInputFile.fromPath(file, c));
        if (predicate != null) b = b.withFilter(FilterCompat.get(predicate));
        try (ParquetReader<Group> reader = b.build()) {
            for (Group g = reader.read(); g != null; g = reader.read()) out.add(data ? record(block, g, dir) : info(block, g, dir));
        }
        return out;
    }

    /** A reader of {@link Group}s over an {@link InputFile}, configured by that file's configuration alone. */
    private static final class GroupReader extends ParquetReader.Builder<Group> {
        GroupReader(InputFile file) {
            super(file);
        }

        @Override
        protected ReadSupport<Group> getReadSupport() {
            return new GroupReadSupport();
        }
    }

    /**
     * Every column of the file but {@code data}, so listing a block's tensors reads no weights. Taken from the
     * file's own schema: a projection must repeat each column's repetition as written, and a file rewritten
     * through Spark has every column optional.
     */
    private static MessageType metadataSchema(Configuration conf, Path file) throws IOException {
        MessageType written;
        try (ParquetFileReader r = ParquetFileReader.open(HadoopInputFile.fromPath(file, conf), HadoopReadOptions.builder(conf, file).build())) {
            written = r.getFooter().getFileMetaData().getSchema();
        }
        List<Type> columns = new ArrayList<>();
        for (Type t : written.getFields()) if (!t.getName().equals("data")) columns.add(t);
        return new MessageType(written.getName(), columns);
    }

    private static long[] shape(Group g) {
        Group list = g.getGroup("shape", 0);
        int n = list.getFieldRepetitionCount("list");
        long[] shape = new long[n];
        for (int i = 0; i < n; i++) shape[i] = list.getGroup("list", i).getLong("element", 0);
        return shape;
    }

    /** The value's part; 0 when null or, in a format 1 file, absent. */
    private static int part(Group g) {
        return !g.getType().containsField("part") || g.getFieldRepetitionCount("part") == 0 ? 0 : g.getInteger("part", 0);
    }

    /** A value's metadata, its names checked as {@link #record} checks them: a listing never hands out a name like {@code ../x}. */
    private static Info info(int block, Group g, Path dir) {
        String module = g.getString("module", 0), kind = g.getString("kind", 0);
        try {
            TensorRecord.checkName(block, module, kind, "module", module);
            TensorRecord.checkName(block, module, kind, "kind", kind);
        } catch (IllegalArgumentException e) {
            throw new ModelFormatException(dir + ": a stored tensor is not valid: " + e.getMessage(), e);
        }
        return new Info(module, kind, g.getString("dtype", 0), shape(g),
                g.getInteger("bits", 0), g.getInteger("group_size", 0), g.getString("format", 0), g.getLong("bytes", 0), part(g));
    }

    private static TensorRecord record(int block, Group g, Path dir) {
        TensorRecord t;
        try {
            t = new TensorRecord(block, g.getString("module", 0), g.getString("kind", 0), g.getString("dtype", 0), shape(g),
                    g.getInteger("bits", 0), g.getInteger("group_size", 0), g.getString("format", 0),
                    g.getBinary("data", 0).getBytes(), g.getString("checksum", 0), part(g));
        } catch (IllegalArgumentException | NullPointerException | IllegalStateException e) {
            throw new ModelFormatException(dir + ": a stored tensor is not valid: " + e.getMessage(), e);
        }
        if (g.getLong("bytes", 0) != t.data().length) {
            throw new ModelFormatException(dir + ": " + t.describe() + ": column bytes says " + g.getLong("bytes", 0)
                    + ", data has " + t.data().length + " bytes: the tensor data is corrupt");
        }
        try {
            t.verify();
        } catch (ModelFormatException e) {
            throw new ModelFormatException(dir + ": " + e.getMessage(), e);
        }
        return t;
    }
}
