// Where a model's activation quantization costs perplexity: kjv.test (512-token windows) with every linear's input
// quantized per token (asymmetric, --abits), then each group of inputs alone, weights in float32 (ND4J, CPU).
// OmniQuant's LET can move the cost of the inputs it has a transform for (after the norms, into o_proj); for
// Llama, not down_proj's (docs/methods.md). From the repository root, after `mvn -o -q package -DskipTests`:
//   jshell --class-path "job/target/classes:core/target/classes:$(cat job/target/runtime-classpath.txt)" \
//     -R-Xmx8g -R-Dbits=6 -R-Dmodel=tiny-llama cluster/diagnose/activation-cost.jsh
import io.blockquant.model.*;
import io.blockquant.nn.*;
import io.blockquant.eval.*;
import io.blockquant.quant.*;
import io.blockquant.tensor.*;
import org.apache.hadoop.conf.Configuration;
import java.util.*;
import java.util.function.Predicate;
import java.nio.file.Files;

int bits = Integer.getInteger("bits", 6);
String name = System.getProperty("model", "tiny-llama");
Configuration conf = new Configuration();
org.apache.hadoop.fs.Path dir = new org.apache.hadoop.fs.Path(new java.io.File("data-samples/models/" + name).getAbsoluteFile().toURI());
ModelSpec spec = ModelSpecReader.read(dir, conf);
int[] test;
try (TextTokenizer tok = TextTokenizer.load(dir, conf)) { test = tok.encode(Files.readString(java.nio.file.Path.of("data-samples/corpus/kjv.test.txt"))); }
List<int[]> windows = TokenWindows.split(test, 512, Integer.MAX_VALUE);
Checkpoint ckpt = Checkpoint.open(dir, conf);
CausalLm fp = new ModelLoader(ckpt, spec, Nd4jBackend.INSTANCE).model();
TokenQuant a = TokenQuant.integer(bits, true);
double ppl(CausalLm m) { NllSum s = WindowScorer.score(m, windows); return Math.exp(s.nll() / s.tokens()); }
CausalLm with(Predicate<String> inputs, boolean qkv) {
  List<DecoderBlock> bs = new ArrayList<>();
  for (DecoderBlock b : fp.blocks()) {
    DecoderBlock q = b.mapLinears(l -> inputs.test(l.name()) ? l.withInput(a) : l);
    bs.add(qkv ? q.withAttnQuant(new AttentionQuant(a, a, a)) : q);
  }
  return new CausalLm(fp.spec(), fp.tokenEmbedding(), fp.positions(), fp.projectIn(), bs, fp.finalNorm(), fp.projectOut(), fp.head());
}
double base = ppl(fp);
System.out.printf("%s A%d asym, weights float32, kjv.test %d windows: full precision %.4f%n", name, bits, windows.size(), base);
void row(String label, Predicate<String> inputs, boolean qkv) {
  double v = ppl(with(inputs, qkv));
  System.out.printf("  %-32s %.4f  %+.2f %%%n", label, v, 100 * (v / base - 1));
}
String attnIn = ".*(q_proj|k_proj|v_proj|query_key_value)", attnOut = ".*(o_proj|out_proj|attention\\.dense)";
String mlpIn = ".*(gate_proj|up_proj|fc1|dense_h_to_4h)", mlpOut = ".*(down_proj|fc2|dense_4h_to_h)";
row("all linears' inputs, Q/K/V", n -> true, true);
row("all linears' inputs", n -> true, false);
row("Q/K/V only", n -> false, true);
row("attention's input projections", n -> n.matches(attnIn), false);
row("attention's output projection", n -> n.matches(attnOut), false);
row("MLP's input projections", n -> n.matches(mlpIn), false);
row("MLP's output projection", n -> n.matches(mlpOut), false);
row("all but the MLP's output, Q/K/V", n -> !n.matches(mlpOut), true);
/exit
