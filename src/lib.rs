//! dyspatcher: a private, end-to-end encrypted chat service in one small executable.
#![forbid(unsafe_code)]
