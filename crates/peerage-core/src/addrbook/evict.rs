//! Inbound eviction (Bitcoin Core `SelectNodeToEvict`). (Being written.)
