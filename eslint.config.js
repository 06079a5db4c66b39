import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // Boundaries from docs/ARCHITECTURE: cores never print or exit.
      'no-console': 'off',
    },
  },
  {
    files: ['src/gateway/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['**/cli/**', '**/tunnel/**', '**/tail/**', '**/auth/**'] },
      ],
    },
  },
  {
    files: ['src/cli/**/*.ts', 'src/auth/**/*.ts', 'src/tunnel/**/*.ts', 'src/tail/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/gateway/**'] }],
    },
  },
  {
    files: ['bin/**/*.js'],
    languageOptions: { globals: { ...globals.node } },
  },
);
