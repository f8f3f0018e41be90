package io.blockquant.gpu;

import io.blockquant.calib.CalibrationSet;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;

/**
 * What {@link OmniQuantRun} and {@link GptqRun} read on a GPU machine: each model's spec and every checkpoint
 * tensor (float32, upcast from the checkpoint's 16-bit dtype, so exact), the calibration windows exactly as
 * {@code quantize --calib FILES --nsamples N --seqlen S --seed SEED} draws them (the files tokenized one by one,
 * in order, and concatenated), and the tokens of the text that {@code --eval-text} would measure. The three
 * fixture models share one tokenizer, so one set of windows serves them all.
 *
 * <p>{@code RunInputs OUT.bqa N SEQ SEED[,SEED...] CALIB_FILE,... EVAL_FILE MODEL_DIR=FAMILY...}: the first seed's
 * windows are {@code tokens}, every seed's are also {@code tokens/SEED} (GPTQ's spread over calibration draws).
 */
public final class RunInputs {

    private RunInputs() {}

    public static void main(String[] args) throws IOException {
        if (args.length < 7) {
            System.err.println("usage: RunInputs OUT.bqa N SEQ SEED[,SEED...] CALIB_FILE,... EVAL_FILE MODEL_DIR=FAMILY...");
            System.exit(2);
        }
        int n = Integer.parseInt(args[1]), seq = Integer.parseInt(args[2]);
        long[] seeds = java.util.Arrays.stream(args[3].split(",")).mapToLong(Long::parseLong).toArray();
        Configuration conf = new Configuration();
        ArrayBundle b = new ArrayBundle();
        String tokenizerDir = null;
        for (int i = 6; i < args.length; i++) {
            String dir = args[i].substring(0, args[i].lastIndexOf('=')), family = args[i].substring(args[i].lastIndexOf('=') + 1);
            ModelSpec spec = ModelSpecReader.read(new org.apache.hadoop.fs.Path(dir), conf);
            b.putBytes("spec/" + family, CheckCases.serialize(spec));
            try (Checkpoint ckpt = Checkpoint.open(dir)) {
                for (String t : ckpt.tensorNames()) b.putFloats(family + "/" + t, ckpt.readFloats(t), ckpt.entry(t).shape());
            }
            if (tokenizerDir == null) tokenizerDir = dir;
        }
        List<int[]> parts = new ArrayList<>();
        int[] eval;
        try (TextTokenizer tok = TextTokenizer.load(new org.apache.hadoop.fs.Path(tokenizerDir), conf)) {
            for (String f : args[4].split(",")) parts.add(tok.encode(Files.readString(Path.of(f), StandardCharsets.UTF_8)));
            eval = tok.encode(Files.readString(Path.of(args[5]), StandardCharsets.UTF_8));
        }
        int[] all = parts.stream().flatMapToInt(java.util.Arrays::stream).toArray();
        for (int k = 0; k < seeds.length; k++) {
            CalibrationSet calib = CalibrationSet.draw(all, args[4], n, seq, seeds[k]);
            int[] tokens = new int[n * seq];
            for (int i = 0; i < n; i++) System.arraycopy(calib.windows().get(i), 0, tokens, i * seq, seq);
            if (k == 0) b.putInts("tokens", tokens, n, seq);
            b.putInts("tokens/" + seeds[k], tokens, n, seq);
        }
        b.putInts("eval", eval, eval.length);
        b.write(Path.of(args[0]));
        System.out.printf("wrote %s: %d arrays, %d calibration windows of %d tokens (seeds %s), %d tokens of %s%n", args[0],
                b.names().size(), n, seq, args[3], eval.length, Path.of(args[5]).getFileName());
    }
}
