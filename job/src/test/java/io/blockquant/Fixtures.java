package io.blockquant;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;

/** Paths of the fixtures in the repository's data-samples/ (tests run from the job/ module folder). */
public final class Fixtures {
    private Fixtures() {}

    public static final Path ROOT = findRoot();
    public static final String[] MODELS = {"tiny-llama", "tiny-opt", "tiny-falcon"};

    private static Path findRoot() {
        Path p = Paths.get("").toAbsolutePath();
        while (p != null && !Files.isDirectory(p.resolve("data-samples"))) p = p.getParent();
        if (p == null) throw new IllegalStateException("data-samples/ not found above " + Paths.get("").toAbsolutePath());
        return p.resolve("data-samples");
    }

    public static Path model(String name) {
        return ROOT.resolve("models").resolve(name);
    }

    public static Path corpus(String file) {
        return ROOT.resolve("corpus").resolve(file);
    }

    /**
     * The first 30,000 characters of kjv.train (about 7,000 tokens) written into {@code dir}: calibration text
     * for a handful of short windows, quick to tokenize.
     */
    public static Path shortCalibrationText(Path dir) throws java.io.IOException {
        String text = Files.readString(corpus("kjv.train.txt"), java.nio.charset.StandardCharsets.UTF_8);
        return Files.writeString(dir.resolve("calib.txt"), text.substring(0, 30_000));
    }

    public static Path reference() {
        return ROOT.resolve("perplexity.json");
    }
}
