package io.blockquant.report;

import io.blockquant.store.LayerError;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * What a report shows of one model store, already read: the manifest, the recipe, every layer error, the
 * stored perplexity (null when the store has no {@code eval.json}) and histograms of a few dequantized weights.
 *
 * @param name        a short name (the store folder's name)
 * @param location    the store's qualified path
 * @param manifest    {@code _manifest.json}, keys in file order
 * @param recipe      {@code recipe.json}, keys in file order (empty when the store has none)
 * @param layerErrors every row of the store's layer_errors, the {@link #BLOCK_OUTPUT} rows included
 * @param modules     the linear layers of a block in the order the heatmap shows them
 * @param perplexity  {@code eval.json}, or null when perplexity was not measured into the store
 * @param histograms  weight histograms, worst layer first
 */
public record StoreFacts(String name, String location, Map<String, Object> manifest, Map<String, Object> recipe,
                         List<LayerError> layerErrors, List<String> modules, Map<String, Object> perplexity,
                         List<WeightHistogram> histograms) {

    /** The layer-errors row that holds a whole block's relative output error (QuantizeJob.BLOCK_OUTPUT). */
    public static final String BLOCK_OUTPUT = "<block output>";

    public StoreFacts {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(location, "location");
        manifest = new LinkedHashMap<>(manifest);
        recipe = new LinkedHashMap<>(recipe);
        layerErrors = List.copyOf(layerErrors);
        modules = List.copyOf(modules);
        perplexity = perplexity == null ? null : new LinkedHashMap<>(perplexity);
        histograms = List.copyOf(histograms);
    }

    /** Block output errors, ascending by block; blocks without such a row are left out. */
    public Map<Integer, Double> blockErrors() {
        Map<Integer, Double> out = new java.util.TreeMap<>();
        for (LayerError e : layerErrors) {
            if (e.module().equals(BLOCK_OUTPUT)) out.put(e.block(), e.relativeOutputError());
        }
        return out;
    }

    /** The per-linear rows (block output rows left out), in store order (block, then module). */
    public List<LayerError> linearErrors() {
        List<LayerError> out = new ArrayList<>();
        for (LayerError e : layerErrors) if (!e.module().equals(BLOCK_OUTPUT)) out.add(e);
        return out;
    }

    /** The stored perplexity value, NaN when not measured. */
    public double ppl() {
        return perplexity != null && perplexity.get("ppl") instanceof Number n ? n.doubleValue() : Double.NaN;
    }
}
