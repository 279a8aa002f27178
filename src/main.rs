fn main() {
    println!("s3mount: mount command coming");
}
