package io.blockquant.schedule;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The lines {@code quantize} prints about where block tasks ran, read back: one per executor JVM and GPU. */
record PlacementLines(String executor, long pid, String gpu, int tasks, Set<Integer> blocks) {

    private static final Pattern LINE = Pattern.compile(
            "^executor (\\S+) \\(pid (\\d+), GPU (\\S+)\\): (\\d+) block tasks, blocks ([-0-9,]+)$", Pattern.MULTILINE);

    static List<PlacementLines> parse(String quantizeOutput) {
        List<PlacementLines> out = new ArrayList<>();
        Matcher m = LINE.matcher(quantizeOutput);
        while (m.find()) {
            Set<Integer> blocks = new TreeSet<>();
            for (String b : m.group(5).split(",")) blocks.add(Integer.parseInt(b));
            out.add(new PlacementLines(m.group(1), Long.parseLong(m.group(2)), m.group(3), Integer.parseInt(m.group(4)), blocks));
        }
        return out;
    }

    /** Every block (-1: the embedding) that had a task run, over all executors. */
    static Set<Integer> blocksRun(List<PlacementLines> lines) {
        Set<Integer> out = new TreeSet<>();
        lines.forEach(l -> out.addAll(l.blocks()));
        return out;
    }
}
