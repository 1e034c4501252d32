"""The proxy loss's spread: how far two candidates' proxy losses may differ by chance alone.

The stored proxy result has no repeated trainings, but every MAD term is an accuracy on a
held-out sample of ``n_test`` examples, so its sampling error is known: the binomial standard
error with the Agresti-Caffo adjustment (two successes and two failures added, so a perfect or
a zero score still has a spread). Examples are the unit (answers within one sequence are
correlated), which makes this an honest, slightly conservative figure. The text term's spread
is not recorded; it counts as zero, and ``proxy_loss_spread`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _accuracy_variance(accuracy: float, n: int) -> float:
    """Variance of a held-out accuracy over ``n`` examples (Agresti-Caffo adjusted)."""
    p = (accuracy * n + 2.0) / (n + 4.0)
    return p * (1.0 - p) / (n + 4.0)


def proxy_loss_spread(proxy: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """(standard error of ``proxy["quality"]``, how it was derived); (None, why) without one.

    With ``components`` (weighted terms) each accuracy term contributes weight^2 x variance;
    otherwise the loss is the mean of ``1 - mad_accuracy`` (the mean accuracy of the MAD tasks
    except memorization) and the text term, as ``star.proxy.result.aggregate`` computes it.
    """
    if not proxy or proxy.get("error") or proxy.get("quality") is None:
        return None, "no proxy quality"
    tasks: Mapping[str, Any] = proxy.get("tasks") or {}
    has_text = proxy.get("text") is not None
    variance = 0.0
    components = proxy.get("components")
    if components:
        for c in components:
            task = tasks.get(c.get("name"))
            if c.get("metric") == "accuracy" and task:
                variance += c["weight"] ** 2 * _accuracy_variance(c["value"], task["n_test"])
    else:
        mad = [t for name, t in tasks.items() if name != "memorization"]
        if mad:
            terms = 1 + int(has_text)
            mad_var = sum(_accuracy_variance(t["accuracy"], t["n_test"]) for t in mad)
            variance = mad_var / len(mad) ** 2 / terms**2
    if variance == 0.0:
        return None, "no held-out accuracy to derive a spread from"
    how = "standard error of the held-out accuracies (binomial, examples as the unit)"
    if has_text:
        how += "; the text term's spread is not recorded (counted as 0)"
    return math.sqrt(variance), how
