__all__ = ['ttypes', 'constants', 'Base', 'Echo', 'Calc']
