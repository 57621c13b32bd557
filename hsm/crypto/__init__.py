"""Pure cryptographic primitives of the software HSM, working on clear keys.

Nothing here knows about the LMK, key storage, host commands or I/O: the host layer unwraps keys and
calls these functions. Every failure is a `CryptoError` carrying the payShield error code to answer with.
"""
