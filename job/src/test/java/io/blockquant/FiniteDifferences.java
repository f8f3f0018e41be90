package io.blockquant;

import java.util.function.DoubleSupplier;

/** The gradient checks' reference: central differences of a loss in every element of its parameters. */
public final class FiniteDifferences {

    private FiniteDifferences() {}

    /** {@code (f(p + h·eᵢ) − f(p − h·eᵢ)) / 2h} for every element i of {@code p}, which {@code f} reads (p is restored). */
    public static double[] central(double[] p, double h, DoubleSupplier f) {
        double[] g = new double[p.length];
        for (int i = 0; i < p.length; i++) {
            double v = p[i];
            p[i] = v + h;
            double up = f.getAsDouble();
            p[i] = v - h;
            double down = f.getAsDouble();
            p[i] = v;
            g[i] = (up - down) / (2 * h);
        }
        return g;
    }
}
