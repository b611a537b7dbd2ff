pub fn compile() {}
