package io.blockquant.export;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.blockquant.export.CheckpointExportTest.Read;
import io.blockquant.model.InMemoryWeights;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.store.BlockRecords;
import io.blockquant.store.StoreReader;
import io.blockquant.store.TensorRecord;
import io.blockquant.tensor.Backends;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * Opt-in ({@code -Dblockquant.export.checks=build/export-checks}, after cluster/gpu/make-export-checks.sh): every
 * checkpoint the GPU check will load, dequantized by check-export.py's numpy reader, against its store's own
 * dequantization — all three families, every layer. Exact up to float16 scale rounding for the INT layouts, bit
 * for bit for W8A8, FP8 and MXFP4, within E4M3's 2^-4 per weight for NVFP4.
 */
@EnabledIfSystemProperty(named = "blockquant.export.checks", matches = ".+")
class ExportChecksFolderTest {

    @BeforeAll
    static void startSpark() {
        CheckpointExportTest.startSpark();
    }

    @AfterAll
    static void stopSpark() {
        CheckpointExportTest.stopSpark();
    }

    @Test
    void everyCheckpointReadsBackAsItsStore(@TempDir Path tmp) throws Exception {
        Path root = io.blockquant.Fixtures.ROOT.getParent().resolve(System.getProperty("blockquant.export.checks"));
        List<Path> sides;
        try (var list = Files.list(root)) {
            sides = list.filter(f -> f.toString().endsWith(".json")).sorted().toList();
        }
        assertTrue(!sides.isEmpty(), root + " holds no NAME.json");
        for (Path side : sides) {
            JsonNode info = CheckpointExportTest.JSON.readTree(side.toFile());
            Path ckpt = root.resolve(info.get("name").asText());
            String layout = info.get("layout").asText();
            Map<String, Read> py = ExportFormatsTest.pythonReader(ckpt, tmp);
            org.junit.jupiter.api.Assumptions.assumeTrue(py != null, "python3 with numpy is not installed");
            StoreReader store = StoreReader.open(CheckpointExportTest.spark, info.get("store").asText());
            ModelSpec spec = ModelSpecReader.read(store.modelDir(), new Configuration());
            ModelLoader names = new ModelLoader(new InMemoryWeights("names", Map.of(), Map.of()), spec, Backends.cpu());
            int layers = 0;
            double worst = 0;
            for (int b : store.blocks()) {
                List<TensorRecord> block = store.tensors(b);
                Map<String, float[]> expected;
                if (layout.startsWith("gptq") || layout.equals("pack-quantized")) {
                    expected = CheckpointExportTest.storeWeightsWithHalfScales(block);
                } else {
                    expected = new HashMap<>();
                    BlockRecords.dequantize(block, "", expected, new HashMap<>());
                }
                for (String module : ExportFormatsTest.quantized(block)) {
                    String name = names.blockPrefix(b) + module + ".weight";
                    float[] want = expected.get(module + ".weight"), got = py.get(name).floats();
                    assertEquals(want.length, got.length, name);
                    for (int k = 0; k < want.length; k++) {
                        if (layout.equals("nvfp4-pack-quantized")) {
                            assertTrue(Math.abs(got[k] - want[k]) <= Math.abs(want[k]) * 0x1p-4 * 1.0001 + 1e-12, name + " " + k);
                            if (want[k] != 0) worst = Math.max(worst, Math.abs(got[k] - want[k]) / Math.abs(want[k]));
                        } else {
                            assertEquals(Float.floatToIntBits(want[k]), Float.floatToIntBits(got[k]), ckpt.getFileName() + " " + name + " element " + k);
                        }
                    }
                    layers++;
                }
            }
            System.err.printf(java.util.Locale.ROOT, "%-16s %-22s %3d layers read back by check-export.py as the store holds them%s%n",
                    ckpt.getFileName(), layout, layers, layout.startsWith("nvfp4") ? String.format(java.util.Locale.ROOT,
                            " (largest element error %.3e of its value)", worst) : "");
            assertTrue(layers >= 6 * 4, ckpt + ": " + layers + " layers");
        }
    }
}
