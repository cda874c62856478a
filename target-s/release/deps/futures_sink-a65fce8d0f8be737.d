/work/wt-m/target-s/release/deps/futures_sink-a65fce8d0f8be737.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-sink-0.3.34/src/lib.rs

/work/wt-m/target-s/release/deps/libfutures_sink-a65fce8d0f8be737.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-sink-0.3.34/src/lib.rs

/work/wt-m/target-s/release/deps/libfutures_sink-a65fce8d0f8be737.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-sink-0.3.34/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-sink-0.3.34/src/lib.rs:
