"""Spectral analysis of attack directions, invariant directions and the
paper's Section 5 theory checks (universal perturbations: `keras_uap.method`)."""

from keras_uap.analysis.spectrum import (
    singular_spectrum,
    spectrum_fractions,
    unit_rows,
)
from keras_uap.analysis.subspaces import avg_abs_dot, max_abs_dot, principal_angles_deg
from keras_uap.analysis.invariant import invariant_directions
from keras_uap.analysis.theory import (
    nonvacuous_sample_size,
    sample_vector_distances,
    theorem1_held_out,
    theorem1_rows,
    theorem2_rows,
    top_eigenpair,
)

__all__ = [
    "unit_rows",
    "singular_spectrum",
    "spectrum_fractions",
    "avg_abs_dot",
    "max_abs_dot",
    "principal_angles_deg",
    "invariant_directions",
    "top_eigenpair",
    "theorem1_rows",
    "theorem1_held_out",
    "sample_vector_distances",
    "theorem2_rows",
    "nonvacuous_sample_size",
]
