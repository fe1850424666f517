"""uetool: utility engineering for language models.

`import uetool` stays light: submodules (and torch, Ray, vLLM) load only when used.
"""

__version__ = "0.1.0"
