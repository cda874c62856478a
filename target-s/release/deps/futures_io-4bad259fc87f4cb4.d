/work/wt-m/target-s/release/deps/futures_io-4bad259fc87f4cb4.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs

/work/wt-m/target-s/release/deps/libfutures_io-4bad259fc87f4cb4.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs

/work/wt-m/target-s/release/deps/libfutures_io-4bad259fc87f4cb4.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs:
