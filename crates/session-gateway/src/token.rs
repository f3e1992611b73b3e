//! Session tokens: minting, verification, JWKS and key rotation.
