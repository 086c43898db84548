export function findChromium(): string | undefined;
export function chromiumArgs(): string[];
export const SWIFTSHADER_ICD: string;
