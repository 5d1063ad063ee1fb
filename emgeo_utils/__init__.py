"""emgeo_utils: the shared package behind the emgeo notebooks.

Each module does one thing; notebooks load, call, assert, plot and explain.
"""

__version__ = "0.1.0"
