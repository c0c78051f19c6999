"""Personal data at rest: a keyring of key-encryption keys, per-customer data keys kept wrapped in
Redis, AES-GCM sealing, and the keyed hash a customer id is known by. An edge package: the core
never encrypts or decrypts, it sees customer keys and sealed bytes only."""
