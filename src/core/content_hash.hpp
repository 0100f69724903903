#pragma once
// A fast 64-bit hash of bytes and of whole files: the checksum of checkpoint units and `--fingerprint content`.
// It detects damage and accidental change, not a forger (it is not cryptographic). Every step is a bijection of
// the hash state, so any change confined to one aligned 8-byte word of the input (one flipped byte, say) always
// changes the hash; other changes collide with a probability of about 2^-64.
#include <cstddef>
#include <cstdint>
#include <string>

namespace hisa {

// The hash of `size` bytes at `data`; the length takes part, so a truncation changes it too.
uint64_t hash_bytes(const void* data, size_t size, uint64_t seed = 0);

// The hash of every byte of the file at `path`: read in blocks of 8 MiB (pread, several threads at once), each
// block hashed alone, the blocks' hashes hashed in order with the file's size, so the value never depends on the
// thread count. std::runtime_error naming the file when it cannot be read.
uint64_t hash_file(const std::string& path);

}  // namespace hisa
