__all__ = ['ttypes', 'constants', 'HelloService']
