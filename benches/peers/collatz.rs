// The Collatz workload of benches/workloads/collatz.lb, as benches/jit_scalar.rs writes it.
fn collatz_rust(n: i64) -> i64 {
    let mut total = 0i64;
    for i in 1..=n {
        let (mut x, mut k) = (i, 0i64);
        while x != 1 {
            x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
            k += 1;
        }
        total += k;
    }
    total
}
fn main() {
    let n: i64 = std::env::args().nth(1).unwrap().parse().unwrap();
    println!("i64 {}", collatz_rust(std::hint::black_box(n)));
}
