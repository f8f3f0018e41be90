package io.blockquant.algo.omniquant;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.blockquant.Fixtures;
import io.blockquant.algo.OmniQuantCalibrator;
import io.blockquant.algo.OmniQuantConfig;
import io.blockquant.eval.NllSum;
import io.blockquant.eval.TokenWindows;
import io.blockquant.eval.WindowScorer;
import io.blockquant.model.Checkpoint;
import io.blockquant.model.ModelLoader;
import io.blockquant.model.ModelSpec;
import io.blockquant.model.ModelSpecReader;
import io.blockquant.model.TextTokenizer;
import io.blockquant.nn.CausalLm;
import io.blockquant.nn.DecoderBlock;
import io.blockquant.tensor.Nd4jBackend;
import io.blockquant.tensor.TensorBackend;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * LET keeps the full-precision function at the level that matters, perplexity: every block of a real model
 * is trained with OmniQuant's W4A4 recipe (LET with shifts where the family has them, and LWC), the learned
 * scales and shifts are folded into norms, weights and biases without quantizing, and the model so
 * transformed must score kjv.test within 0.1 % of the original.
 */
class LetPerplexityTest {

    static final int CALIB_WINDOWS = 4, CALIB_SEQ = 128, EVAL_WINDOWS = 16, EVAL_SEQ = 512;

    @ParameterizedTest
    @ValueSource(strings = {"tiny-llama", "tiny-opt", "tiny-falcon"})
    void foldedLetKeepsThePerplexity(String name) throws Exception {
        Configuration conf = new Configuration();
        java.nio.file.Path dir = Fixtures.model(name);
        Path modelDir = new Path(dir.toUri());
        ModelSpec spec = ModelSpecReader.read(modelDir, conf);
        TensorBackend be = Nd4jBackend.INSTANCE;
        int[] train, test;
        try (TextTokenizer tok = TextTokenizer.load(modelDir, conf)) {
            train = tok.encode(Files.readString(Fixtures.corpus("kjv.train.txt")).substring(0, 200_000));
            test = tok.encode(Files.readString(Fixtures.corpus("kjv.test.txt")));
        }
        int[][] calib = new int[CALIB_WINDOWS][];
        for (int w = 0; w < CALIB_WINDOWS; w++) calib[w] = Arrays.copyOfRange(train, w * 7 * CALIB_SEQ, w * 7 * CALIB_SEQ + CALIB_SEQ);
        List<int[]> evalWindows = TokenWindows.split(test, EVAL_SEQ, EVAL_WINDOWS);

        try (Checkpoint ckpt = Checkpoint.open(modelDir, conf)) {
            CausalLm fp = new ModelLoader(ckpt, spec, be).model();
            OmniQuantConfig cfg = OmniQuantConfig.of(spec.family(), 4, 0, 4).withEpochs(2);
            assertTrue(cfg.let(), "the W4A4 recipe trains LET");

            // block i is trained on the full-precision model's inputs to it, against its own outputs
            float[] x = fp.embed(calib).toFloats();
            List<DecoderBlock> folded = new ArrayList<>();
            double weightChange = 0;
            for (int i = 0; i < fp.blocks().size(); i++) {
                DecoderBlock block = fp.blocks().get(i);
                float[] in = x;
                float[] y = be.scratchValue(() -> block.forward(be.fromFloats(in, in.length / spec.hiddenSize(), spec.hiddenSize()),
                        CALIB_WINDOWS, CALIB_SEQ).toFloats());
                OmniQuantObjective trained = OmniQuantCalibrator.train(block, io.blockquant.algo.BlockCalibrator.windows(in, CALIB_WINDOWS),
                        io.blockquant.algo.BlockCalibrator.windows(y, CALIB_WINDOWS), null, CALIB_SEQ, cfg, i, null);
                DecoderBlock t = trained.transformedFullPrecision(be);
                weightChange = Math.max(weightChange, LetFoldingTest.relativeError(
                        t.linears().get(0).weight().toFloats(), block.linears().get(0).weight().toFloats()));
                folded.add(t);
                x = y;
            }
            // the learned transformation really moved the weights: the check is not vacuous
            assertTrue(weightChange > 0.01, name + ": LET left the weights as they were (" + weightChange + ")");

            CausalLm transformed = new CausalLm(spec, fp.tokenEmbedding(), fp.positions(), fp.projectIn(), folded,
                    fp.finalNorm(), fp.projectOut(), fp.head());
            double pplFp = perplexity(WindowScorer.score(fp, evalWindows));
            double pplLet = perplexity(WindowScorer.score(transformed, evalWindows));
            double rel = Math.abs(pplLet / pplFp - 1);
            System.out.printf("%s: kjv.test[:%d windows] perplexity fp %.4f, LET folded %.4f (%+.4f %%), weights moved by up to %.1f %%%n",
                    name, evalWindows.size(), pplFp, pplLet, 100 * (pplLet / pplFp - 1), 100 * weightChange);
            assertTrue(rel < 1e-3, name + ": LET folded into the weights changes perplexity by " + 100 * rel + " %");
        }
    }

    static double perplexity(NllSum s) {
        return Math.exp(s.nll() / s.tokens());
    }
}
