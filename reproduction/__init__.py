"""Reproduction of the CoDEAL paper's simulation Tables 2, 3, 4a and 4b with codeal_jax."""
