__all__ = ['ttypes', 'constants', 'Base', 'Conformance', 'Second']
