package io.blockquant.schedule;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.schedule.QuantizeJob.BlockSummary;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The driver loop in sequential mode: block i's commit runs while block i+1 calibrates, and a failure keeps it. */
class BlockLoopTest {

    static final BlockPlan PLAN = new BlockPlan(3, List.of(List.of("mlp.down_proj")));
    static final PrintStream QUIET = new PrintStream(new ByteArrayOutputStream(), true);

    static BlockLoop.Outcome outcome(int block) {
        BlockStats stats = new BlockStats();
        stats.addLayer("mlp.down_proj", 1, 100, 10);
        return new BlockLoop.Outcome(block, stats, Map.of(), 10, 0.1);
    }

    @Test
    void aBlockIsCommittedWhileTheNextCalibrates() throws Exception {
        CountDownLatch block1Calibrating = new CountDownLatch(1);
        List<String> events = new CopyOnWriteArrayList<>();
        List<BlockSummary> done = BlockLoop.run(List.of(0, 1, 2), 1, PLAN, 3, 10, "GPTQ", b -> {
            if (b == 1) block1Calibrating.countDown();
            events.add("calibrated " + b);
            return outcome(b);
        }, (o, errors) -> {
            // block 0's commit ends only once block 1 calibrates: a loop that committed before going on would stall here
            if (o.block() == 0) assertTrue(block1Calibrating.await(10, TimeUnit.SECONDS), "block 1 did not calibrate beside block 0's commit");
            assertEquals(2, errors.size()); // the layer's row and the block output's
            events.add("committed " + o.block());
        }, () -> events.add("cancelled"), QUIET);
        assertEquals(List.of(0, 1, 2), done.stream().map(BlockSummary::block).toList());
        assertEquals(0.1, done.get(2).layerErrors().get("mlp.down_proj"), 1e-12); // √(1 / 100)
        // commits in block order, every block committed, nothing cancelled
        assertEquals(List.of("committed 0", "committed 1", "committed 2"),
                events.stream().filter(e -> e.startsWith("committed")).toList());
        assertEquals(6, events.size(), events.toString());
    }

    @Test
    void aFailedBlockWaitsForTheCommitUnderWay() {
        List<Integer> committed = new CopyOnWriteArrayList<>();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> BlockLoop.run(List.of(0, 1, 2), 1, PLAN, 3, 10,
                "GPTQ", b -> {
                    if (b == 1) throw new IllegalStateException("block 1: out of memory");
                    return outcome(b);
                }, (o, errors) -> {
                    Thread.sleep(300); // slower than block 1's failure
                    committed.add(o.block());
                }, () -> {}, QUIET));
        assertEquals("block 1: out of memory", e.getMessage());
        assertEquals(List.of(0), committed, "block 0 was calibrated before the failure: its commit finished");
    }

    @Test
    void theWorstLayerIsTheLargestMeasuredErrorAndABlockTrainedAsAWholeSaysSo() {
        java.util.Map<String, Double> errors = new java.util.LinkedHashMap<>();
        errors.put("self_attn.q_proj", Double.NaN);
        errors.put("mlp.up_proj", 0.02);
        errors.put("mlp.down_proj", 0.05);
        assertEquals("mlp.down_proj 0.05000", new BlockSummary(0, 1, 0.1, errors, false).worstLayer(), "NaN (not measured) is skipped");
        errors.replaceAll((k, v) -> Double.NaN);
        assertEquals("none measured (the method changes the layers' inputs; the block's output is compared)", new BlockSummary(0, 1, 0.1, errors, false).worstLayer());
    }
}
