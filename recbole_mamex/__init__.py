"""recbole-mamex: multimodal and cold-start recommendation on RecBole 1.2.1.

Importing the package applies the compatibility shims in :mod:`recbole_mamex.compat` once.
"""

from recbole_mamex import compat as _compat

_compat.apply_all()

__version__ = "0.1.0"
