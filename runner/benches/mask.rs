//! Throughput of the streaming log masker: 100 secrets of 16-40 bytes, 64 MiB of
//! Terraform-like log text with a few secrets in it, pushed in 64 KiB chunks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envplane_runner::mask::Masker;

const SECRET_COUNT: usize = 100;
const LOG_BYTES: usize = 64 * 1024 * 1024;
const CHUNK_BYTES: usize = 64 * 1024;
/// Roughly one secret per MiB of log.
const SECRET_EVERY_LINES: u64 = 12_000;

/// xorshift64*: deterministic input without another dependency.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn random_secrets(rng: &mut Prng) -> Vec<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-";
    (0..SECRET_COUNT)
        .map(|_| {
            let len = 16 + rng.below(25) as usize;
            (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                .collect()
        })
        .collect()
}

fn log_text(rng: &mut Prng, secrets: &[Vec<u8>]) -> Vec<u8> {
    const RESOURCES: &[&str] = &[
        "aws_instance.web",
        "aws_s3_bucket.artifacts",
        "module.vpc.aws_subnet.private",
        "aws_iam_role.deployer",
        "google_compute_instance.worker",
    ];
    let mut text = Vec::with_capacity(LOG_BYTES + 256);
    let mut line: u64 = 0;
    while text.len() < LOG_BYTES {
        line += 1;
        let resource = RESOURCES[rng.below(RESOURCES.len() as u64) as usize];
        let index = rng.below(32);
        let elapsed = rng.below(600);
        let entry = match line % 4 {
            0 => format!("{resource}[{index}]: Still creating... [{elapsed}s elapsed]\n"),
            1 => format!("{resource}[{index}]: Refreshing state... [id=i-{:016x}]\n", rng.next()),
            2 => format!("  # {resource}[{index}] will be updated in-place\n      ~ tags = {{ \"Name\" = \"env-{elapsed}\" }}\n"),
            _ => format!("{resource}[{index}]: Creation complete after {elapsed}s [id={:x}]\n", rng.next()),
        };
        text.extend_from_slice(entry.as_bytes());
        if line.is_multiple_of(SECRET_EVERY_LINES) {
            text.extend_from_slice(b"export TOKEN=");
            text.extend_from_slice(&secrets[rng.below(secrets.len() as u64) as usize]);
            text.push(b'\n');
        }
    }
    text.truncate(LOG_BYTES);
    text
}

fn mask_in_chunks(secrets: &[Vec<u8>], log: &[u8]) -> usize {
    let mut masker = Masker::new(secrets);
    let mut emitted = 0;
    for chunk in log.chunks(CHUNK_BYTES) {
        emitted += black_box(masker.push(chunk)).len();
    }
    emitted + black_box(masker.finish()).len()
}

fn bench_mask(c: &mut Criterion) {
    let mut rng = Prng(0x5eed_1234_abcd_ef01);
    let secrets = random_secrets(&mut rng);
    let log = log_text(&mut rng, &secrets);

    let mut group = c.benchmark_group("mask");
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("100 secrets, 64 MiB log, 64 KiB chunks", |b| {
        b.iter(|| mask_in_chunks(&secrets, &log))
    });
    group.bench_function("no secrets, 64 MiB log, 64 KiB chunks", |b| {
        b.iter(|| mask_in_chunks(&[], &log))
    });
    group.finish();
}

criterion_group!(benches, bench_mask);
criterion_main!(benches);
