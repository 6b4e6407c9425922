# nedbd on Debian bookworm: build stage with the -dev packages, slim runtime stage.
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake ninja-build pkg-config \
        libbson-dev libevent-dev libsodium-dev libpcre2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY bsonq bsonq
COPY engine engine
COPY aggregation aggregation
COPY wire wire
COPY tests/fuzz tests/fuzz
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNEDB_TESTS=OFF \
    && cmake --build build

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libbson-1.0-0 libevent-2.1-7 libevent-pthreads-2.1-7 libsodium23 libpcre2-8-0 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/nedbd /src/build/nedb /usr/local/bin/
VOLUME /data
EXPOSE 27017
ENTRYPOINT ["/usr/local/bin/nedbd", "--bind", "0.0.0.0", "--port", "27017", "--dbpath", "/data"]
