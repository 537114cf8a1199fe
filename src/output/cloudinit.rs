//! cloud-init NoCloud seed: user-data, meta-data, network-config.
