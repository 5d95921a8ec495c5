/**
 * `phrase` with its indefinite article, for messages: "an image/jpeg file", "a video/mp4 file".
 * By its first letter, which suits the words our messages name (MIME types, codes, fields).
 */
export function withArticle(phrase: string): string {
  return `${/^[aeiou]/i.test(phrase) ? 'an' : 'a'} ${phrase}`;
}
