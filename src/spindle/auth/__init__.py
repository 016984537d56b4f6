"""Who is asking: users, passwords, personal API tokens, JWTs from an identity provider or a
trusted proxy, and session cookies. Nothing here speaks HTTP; ``spindle.api.auth`` reads the
request's headers and hands the credentials to :class:`~spindle.auth.authenticator.Authenticator`.
"""
