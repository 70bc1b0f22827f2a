"""drivewm: world models of driving scenes (tokenized, JEPA, state-space) on one data contract."""

__version__ = "0.1.0"
