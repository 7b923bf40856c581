// Placeholder entry point; the real CLI lands with the runtime.
int main() { return 0; }
