# syntax=docker/dockerfile:1
# The licensing-core image: built from source on Debian 12, run from a slim Debian 12 stage that
# contains only the runtime libraries, as uid 10001, with no compiler, shell or package tools.
# Build it with deploy/build-images, which passes BASE_IMAGE pinned by digest and sends the
# committed tree (git archive) as the build context.

# BASE_IMAGE has no default: a Debian 12 image by digest, such as
# docker.io/library/debian:bookworm-slim@sha256:<64 hex digits> (docs/kubernetes.md).
ARG BASE_IMAGE

FROM ${BASE_IMAGE} AS build
ARG BASE_IMAGE
RUN case "${BASE_IMAGE}" in \
      *@sha256:????????????????????????????????????????????????????????????????) ;; \
      *) echo "BASE_IMAGE must name its image by digest (NAME@sha256:HEX), not '${BASE_IMAGE}'" >&2; exit 1 ;; \
    esac
# The build packages of scripts/install-deps, without the test and benchmark ones.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libboost-dev libboost-system-dev libssl-dev \
      libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libpqxx-dev libpq-dev libsqlite3-dev libsodium-dev libcrypt-dev libicu-dev \
      nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev libtss2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake --preset release -DLICENSING_BUILD_TESTS=OFF -DLICENSING_BUILD_BENCH=OFF \
 && cmake --build build/release --target licensing-core -j"$(nproc)" \
 && strip --strip-unneeded build/release/bin/licensing-core

FROM ${BASE_IMAGE} AS runtime
# Runtime libraries only (the packages that ldd lists for the program, the TCTI modules that
# the TCTI loader opens at run time, and swtpm for the development overlay's embedded TPM).
# The same RUN then deletes the shells, apt, dpkg and perl programs, so the running image
# has no way to install or script anything; /var/lib/dpkg/status stays for image scanners.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libpqxx-6.4 libsqlite3-0 libspdlog1.10 libfmt9 libssl3 libyaml-cpp0.7 \
      libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-sys1 libtss2-tctildr0 libtss2-tcti-device0 \
      libtss2-tcti-swtpm0 swtpm swtpm-tools \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 10001 licensing \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin licensing \
 && rm -f /usr/bin/apt /usr/bin/apt-* /usr/bin/dpkg /usr/bin/dpkg-* /usr/bin/perl /usr/bin/perl5* \
          /usr/bin/bash /usr/bin/dash /usr/bin/rbash /usr/bin/sh /bin/bash /bin/dash /bin/rbash /bin/sh
COPY --from=build /src/build/release/bin/licensing-core /usr/local/bin/licensing-core
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/licensing-core"]
