// Downstream use of HARPE checkpoints: Hugging Face transformers remote code.

export * from "./remote_code.ts";
