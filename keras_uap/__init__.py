"""keras-uap: universal adversarial perturbations of equivariant networks."""

__version__ = "0.1.0"
