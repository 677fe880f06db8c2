"""recbole-mamex: multimodal and cold-start recommendation on RecBole 1.2.1.

Importing the package loads nothing heavy. The compatibility shims of :mod:`recbole_mamex.compat` are
applied, once, by the modules that run RecBole code (:mod:`recbole_mamex.config`, through which every
run, checkpoint load and serving call goes); code that drives RecBole directly calls
``recbole_mamex.compat.apply_all()`` first.
"""

__version__ = "0.1.0"
