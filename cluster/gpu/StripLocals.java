import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;
import org.objectweb.asm.ClassReader;
import org.objectweb.asm.ClassVisitor;
import org.objectweb.asm.ClassWriter;
import org.objectweb.asm.Label;
import org.objectweb.asm.MethodVisitor;
import org.objectweb.asm.Opcodes;

/**
 * Drops local-variable tables (names and generic types of locals, for debuggers) from the instance methods of
 * every class of the jars under a folder, in place, keeping line numbers for stack traces; entries stay stored (uncompressed) for xz.
 * Run by stage-job.sh with ASM on the classpath:  java -cp asm.jar StripLocals.java LIB_DIR
 */
public final class StripLocals {
    public static void main(String[] args) throws IOException {
        long before = 0, after = 0;
        List<Path> jars;
        try (Stream<Path> s = Files.walk(Path.of(args[0]))) {
            jars = s.filter(p -> p.toString().endsWith(".jar")).toList();
        }
        for (Path jar : jars) {
            Path tmp = jar.resolveSibling(jar.getFileName() + ".tmp");
            try (ZipFile in = new ZipFile(jar.toFile()); ZipOutputStream out = new ZipOutputStream(Files.newOutputStream(tmp))) {
                for (ZipEntry e : java.util.Collections.list(in.entries())) {
                    byte[] data;
                    try (InputStream is = in.getInputStream(e)) {
                        data = is.readAllBytes();
                    }
                    if (e.getName().endsWith(".class")) {
                        before += data.length;
                        data = strip(data);
                        after += data.length;
                    }
                    ZipEntry o = new ZipEntry(e.getName());
                    o.setMethod(ZipEntry.STORED);
                    o.setSize(data.length);
                    CRC32 crc = new CRC32();
                    crc.update(data);
                    o.setCrc(crc.getValue());
                    o.setTime(e.getTime());
                    out.putNextEntry(o);
                    out.write(data);
                    out.closeEntry();
                }
            }
            Files.move(tmp, jar, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        System.out.printf("StripLocals: %d jars, classes %.1f -> %.1f MB%n", jars.size(), before / 1e6, after / 1e6);
    }

    static byte[] strip(byte[] data) {
        try {
            ClassReader r = new ClassReader(data);
            ClassWriter w = new ClassWriter(0); // a fresh constant pool: the tables' names and types go too
            r.accept(new ClassVisitor(Opcodes.ASM9, w) {
                @Override
                public MethodVisitor visitMethod(int access, String name, String desc, String sig, String[] ex) {
                    MethodVisitor mv = super.visitMethod(access, name, desc, sig, ex);
                    // constructors and static factories keep theirs: Jackson (Paranamer) reads creator
                    // parameter names from them (Spark's RDDOperationScope)
                    if (name.equals("<init>") || (access & Opcodes.ACC_STATIC) != 0) return mv;
                    return new MethodVisitor(Opcodes.ASM9, mv) {
                        @Override
                        public void visitLocalVariable(String n, String d, String s, Label start, Label end, int index) {}
                    };
                }
            }, 0);
            return w.toByteArray();
        } catch (RuntimeException e) { // a class ASM cannot read (a newer class file version): as it was
            return data;
        }
    }
}
