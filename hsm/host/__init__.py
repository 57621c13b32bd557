"""The payShield-style host command layer: wire protocol, field reading, command handlers and the processor.

Sans-IO: `hsmd` (hsm.server) and the in-process client both feed request payloads to
`processor.HostCommandProcessor` and get response payloads back.
"""
