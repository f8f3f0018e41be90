package io.blockquant.gpu;

import io.blockquant.schedule.OmniQuantParameterFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.apache.hadoop.conf.Configuration;

/**
 * {@link OmniQuantRun}'s {@code block-N.bqa} files into the {@code block-N.safetensors} files that
 * {@code quantize --omni-params DIR} folds from: {@code OmniQuantParamsImport BQA_DIR PARAMS_DIR}.
 */
public final class OmniQuantParamsImport {

    private OmniQuantParamsImport() {}

    public static void main(String[] args) throws IOException {
        if (args.length != 2) {
            System.err.println("usage: OmniQuantParamsImport BQA_DIR PARAMS_DIR");
            System.exit(2);
        }
        Configuration conf = new Configuration();
        int count = 0;
        try (Stream<Path> files = Files.list(Path.of(args[0]))) {
            for (Path f : files.sorted().toList()) {
                String name = f.getFileName().toString();
                if (!name.matches("block-\\d+\\.bqa")) continue;
                int block = Integer.parseInt(name.substring(6, name.length() - 4));
                OmniQuantParameterFiles.write(conf, args[1], block, ArrayBundle.read(f).floatsByName());
                count++;
            }
        }
        System.out.printf("%d blocks' learned parameters written to %s%n", count, args[1]);
    }
}
