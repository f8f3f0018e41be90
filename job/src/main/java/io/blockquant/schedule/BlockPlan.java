package io.blockquant.schedule;

import io.blockquant.model.ModelSpec;
import java.io.Serializable;
import java.util.List;

/**
 * The driver's plan: one stage per block, and inside a block the true-sequential groups of linear
 * layers (layers of a group share their input, so they share one Hessian): a group is calibrated on the
 * inputs produced by the block with every earlier group already quantized. The groups are the family's
 * ({@code FamilyDescriptor#sequentialGroups}).
 */
public record BlockPlan(int blocks, List<List<String>> groups) implements Serializable {

    public static BlockPlan of(ModelSpec spec) {
        return new BlockPlan(spec.numLayers(), spec.family().descriptor().sequentialGroups());
    }

    /** Every linear layer of a block, in true-sequential order. */
    public List<String> allLinears() {
        return groups.stream().flatMap(List::stream).toList();
    }
}
