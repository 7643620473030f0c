"""Board definitions and bitstream builds. Needs the ``build`` extra."""
