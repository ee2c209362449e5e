"""fnnbench: reproduce, measure and trust the classic claims about deep feedforward networks."""

__version__ = "0.1.0"
