package io.blockquant.algo;

import java.io.Serializable;
import java.util.Map;

/**
 * One method's settings, as resolved from recipe keys by its entry in {@link Methods}; validated where built.
 * Every method stores weights in some {@link WeightFormat}, LoRC beside them or not.
 */
public interface MethodSettings extends Serializable {

    /** The recipe's {@code method} value: rtn, gptq, omniquant. */
    String name();

    WeightFormat format();

    LorcSettings lorc();

    /** The method that these settings calibrate with. */
    BlockCalibrator calibrator();

    /** Options shown after the format in the run's label ({@code " act-order"}, {@code " lwc 20ep"}). */
    String options();

    /** This method's own recipe.json keys beside the format's and LoRC's (the others read their absent values, {@link Methods#absentRecipe}). */
    Map<String, Object> recipe();
}
